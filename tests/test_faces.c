/* Face detection vs libfacedetection's own reference_runner (tests/fixtures/faces/reference.jsonl,
 * made from the composed scenes): every reference face found, boxes within 2 px, scores
 * within 0.02, no extra faces. The reference truncates boxes to ints and scores to
 * percent, so ours are compared after the same truncation. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "emote.h"
#include "harness.h"

#define REFERENCE "tests/fixtures/faces/reference.jsonl"
#define MAX_BOX_PX 2
#define MAX_SCORE_DIFF 0.02
#define MAX_LANDMARK_PX 2

static emote_model *open_detector(int *failures) {
    emote_error err;
    emote_model *m = emote_model_open("models/yunet.safetensors", &err);
    CHECKF(m != NULL, "%s", err.message);
    return m;
}

/* Largest difference between our face and the reference's, in box and landmark pixels. */
static int face_distance(const emote_face *f, const cJSON *ref) {
    const cJSON *box = cJSON_GetObjectItem(ref, "box"), *lm = cJSON_GetObjectItem(ref, "landmarks");
    float x1 = f->x + f->w, y1 = f->y + f->h;
    int ours[4] = {(int)f->x, (int)f->y, (int)(x1 - f->x), (int)(y1 - f->y)};
    int worst = 0;
    for (int i = 0; i < 4; i++) worst = fmax(worst, abs(ours[i] - cJSON_GetArrayItem(box, i)->valueint));
    for (int i = 0; i < 10; i++) worst = fmax(worst, abs((int)f->landmarks[i] - cJSON_GetArrayItem(lm, i)->valueint));
    return worst;
}

static void check_image(const emote_model *m, const cJSON *ref, int *failures, int *checked) {
    const char *path = cJSON_GetObjectItem(ref, "path")->valuestring;
    emote_image img;
    emote_error err;
    CHECKF(emote_image_load(path, &img, &err) == EMOTE_OK, "%s", err.message);
    if (!img.pixels) return;
    emote_detect_options o = EMOTE_DETECT_DEFAULTS;
    o.detect_size = 0; /* the reference runs at full size */
    emote_face *faces;
    int n;
    CHECKF(emote_detect_faces(m, &img, &o, &faces, &n, &err) == EMOTE_OK, "%s", err.message);
    const cJSON *want = cJSON_GetObjectItem(ref, "faces");
    CHECKF(n == cJSON_GetArraySize(want), "%s: %d faces, the reference finds %d", path, n, cJSON_GetArraySize(want));
    const cJSON *r;
    cJSON_ArrayForEach(r, want) {
        int best = -1, best_distance = 1 << 30;
        for (int i = 0; i < n; i++) {
            int d = face_distance(&faces[i], r);
            if (d < best_distance) best = i, best_distance = d;
        }
        CHECKF(best >= 0 && best_distance <= MAX_BOX_PX, "%s: reference face at %d,%d: nearest is %d px away", path,
               cJSON_GetArrayItem(cJSON_GetObjectItem(r, "box"), 0)->valueint,
               cJSON_GetArrayItem(cJSON_GetObjectItem(r, "box"), 1)->valueint, best_distance);
        if (best < 0) continue;
        double score = cJSON_GetObjectItem(r, "score")->valuedouble / 100.0;
        CHECKF(fabs(faces[best].score - score) <= MAX_SCORE_DIFF, "%s: score %.3f, reference %.2f", path,
               faces[best].score, score);
        (*checked)++;
    }
    for (int i = 1; i < n; i++) CHECK(faces[i - 1].w * faces[i - 1].h >= faces[i].w * faces[i].h); /* largest first */
    free(faces);
    emote_image_free(&img);
}

TEST(faces_match_the_reference_library) {
    emote_model *m = open_detector(failures);
    FILE *f = fopen(REFERENCE, "r");
    CHECKF(f != NULL, "cannot open %s", REFERENCE);
    if (!m || !f) {
        if (f) fclose(f);
        emote_model_close(m);
        return;
    }
    char line[8192];
    int images = 0, faces = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *ref = cJSON_Parse(line);
        CHECKF(ref != NULL, "%s: bad line", REFERENCE);
        if (!ref) continue;
        check_image(m, ref, failures, &faces);
        cJSON_Delete(ref);
        images++;
    }
    fclose(f);
    printf("     %d images, %d reference faces matched\n", images, faces);
    CHECK(images >= 5 && faces >= 10);
    emote_model_close(m);
}

TEST(faces_in_tiny_gray_and_rgba_images) {
    emote_model *m = open_detector(failures);
    if (!m) return;
    emote_error err;
    emote_face *faces;
    int n;
    unsigned char px[4 * 5 * 3] = {0};
    emote_image tiny = {.width = 5, .height = 3, .channels = 4, .pixels = px};
    CHECKF(emote_detect_faces(m, &tiny, NULL, &faces, &n, &err) == EMOTE_OK, "%s", err.message);
    CHECK(n == 0);
    free(faces);
    /* The astronaut as gray and as RGBA: the face is still found. */
    emote_image img, gray = {0}, rgba = {0};
    CHECKF(emote_image_load("models/samples/astronaut-collins.png", &img, &err) == EMOTE_OK, "%s", err.message);
    if (img.pixels) {
        size_t count = (size_t)img.width * img.height;
        gray = (emote_image){.width = img.width, .height = img.height, .channels = 1, .pixels = malloc(count)};
        rgba = (emote_image){.width = img.width, .height = img.height, .channels = 4, .pixels = malloc(count * 4)};
        for (size_t i = 0; i < count; i++) {
            gray.pixels[i] = img.pixels[3 * i + 1];
            memcpy(rgba.pixels + 4 * i, img.pixels + 3 * i, 3);
            rgba.pixels[4 * i + 3] = 255;
        }
        CHECK(emote_detect_faces(m, &gray, NULL, &faces, &n, &err) == EMOTE_OK && n == 1);
        free(faces);
        CHECK(emote_detect_faces(m, &rgba, NULL, &faces, &n, &err) == EMOTE_OK && n == 1);
        free(faces);
        emote_detect_options capped = EMOTE_DETECT_DEFAULTS;
        capped.detect_size = 64; /* shrunk: still one face, box in source pixels */
        CHECK(emote_detect_faces(m, &img, &capped, &faces, &n, &err) == EMOTE_OK && n == 1);
        if (n == 1) CHECKF(faces[0].w > 60 && faces[0].w < 120, "box width %.1f at detect size 64", faces[0].w);
        free(faces);
        emote_image_free(&img);
        emote_image_free(&gray);
        emote_image_free(&rgba);
    }
    emote_model_close(m);
}

/* ---- choosing faces: the most confident for --max-faces, the main face for eval/sort ---- */

static emote_face box(float x, float w, float score) { return (emote_face){.x = x, .y = 0, .w = w, .h = w, .score = score}; }

TEST(keep_best_faces_keeps_the_most_confident_largest_first) {
    emote_face f[5] = {box(0, 100, 0.25f), box(200, 20, 0.9f), box(300, 40, 0.8f), box(400, 30, 0.8f), box(500, 90, 0.3f)};
    CHECK(emote_keep_best_faces(f, 5, 3) == 3);
    /* 0.9, then the tie at 0.8 broken by size (both kept); the large low scores dropped */
    CHECK(f[0].x == 300 && f[1].x == 400 && f[2].x == 200);
    emote_face g[2] = {box(0, 10, 0.5f), box(20, 30, 0.4f)};
    CHECK(emote_keep_best_faces(g, 2, 5) == 2 && g[0].x == 20); /* nothing dropped: largest first */
    CHECK(emote_keep_best_faces(NULL, 3, 1) == 0 && emote_keep_best_faces(g, 0, 1) == 0);
}

TEST(main_face_is_the_largest_within_the_margin_of_the_best) {
    emote_face phantom[3] = {box(0, 300, 0.23f), box(400, 60, 0.91f), box(500, 80, 0.75f)};
    CHECK(emote_main_face(phantom, 3) == 2); /* 0.75 is within 0.2 of 0.91 and larger than it */
    phantom[2].score = 0.70f;
    CHECK(emote_main_face(phantom, 3) == 1); /* now it is not: the best face itself */
    emote_face alone[1] = {box(0, 10, 0.05f)};
    CHECK(emote_main_face(alone, 1) == 0);
    CHECK(emote_main_face(alone, 0) == -1 && emote_main_face(NULL, 2) == -1);
}

TEST(face_clip_bounds_the_box_to_the_image) {
    emote_face f = {.x = -30, .y = 97, .w = 300, .h = 495, .score = 0.9f};
    emote_face_clip(&f, 200, 400);
    CHECK(f.x == 0 && f.y == 97 && f.w == 200 && f.h == 303);
    emote_face out = {.x = 500, .y = -50, .w = 10, .h = 20};
    emote_face_clip(&out, 200, 400);
    CHECK(out.x == 200 && out.y == 0 && out.w == 0 && out.h == 0);
}

/* A face turned by 90, 180 and 270 degrees is found with any_angle, with its box turned
 * back into the image's pixels and its landmarks saying which way is up. */
TEST(any_angle_finds_turned_faces) {
    int failures_before = *failures;
    emote_model *m = open_detector(failures);
    emote_image img;
    emote_error err;
    if (!m || emote_image_load("tests/fixtures/faces/scene-one.png", &img, &err)) {
        CHECK(!"scene-one.png loads");
        emote_model_close(m);
        return;
    }
    emote_detect_options any = EMOTE_DETECT_DEFAULTS;
    any.any_angle = 1;
    emote_face *up, *down;
    int n_up, n_down;
    CHECK(!emote_detect_faces(m, &img, NULL, &up, &n_up, &err) && n_up == 1);
    /* the same image upside down: the pixels reversed, channel by channel */
    size_t px = (size_t)img.width * img.height, ch = (size_t)img.channels;
    unsigned char *flipped = malloc(px * ch);
    for (size_t i = 0; flipped && i < px; i++) memcpy(flipped + i * ch, img.pixels + (px - 1 - i) * ch, ch);
    emote_image turned = {.width = img.width, .height = img.height, .channels = img.channels, .pixels = flipped};
    CHECK(!emote_detect_faces(m, &turned, &any, &down, &n_down, &err) && n_down == 1);
    if (*failures == failures_before) {
        CHECK(fabsf(down[0].x - (img.width - up[0].x - up[0].w)) < 1.5f);
        CHECK(fabsf(down[0].y - (img.height - up[0].y - up[0].h)) < 1.5f);
        CHECK(fabsf(down[0].score - up[0].score) < 0.01f);
        CHECK(down[0].landmarks[1] > down[0].landmarks[7]); /* the eyes below the mouth */
        free(up);
        free(down);
    }
    free(flipped);
    emote_image_free(&img);
    emote_model_close(m);
}

/* The buffers a model keeps from one run for the next (src/net.c) change nothing: runs at
 * several sizes, one after another on one model, give bitwise the outputs of a model that
 * never ran before, and two models running at once on two threads agree too. */
static bool run_fresh_and_reused(emote_model *reused, int h, int w, int *failures) {
    emote_error err;
    emote_model *fresh = emote_model_open("models/yunet.safetensors", &err);
    CHECKF(fresh != NULL, "%s", err.message);
    float *x = malloc(sizeof(float) * 3 * (size_t)h * w);
    emote_tensor a[12], b[12];
    bool same = fresh && x && emote_model_num_outputs(reused) == 12;
    for (size_t i = 0; same && i < 3 * (size_t)h * w; i++) x[i] = (float)((i * 2654435761u) % 256);
    same = same && !emote_model_run(fresh, x, h, w, a, &err) && !emote_model_run(reused, x, h, w, b, &err);
    for (int k = 0; same && k < 12; k++)
        same = a[k].channels == b[k].channels && a[k].height == b[k].height && a[k].width == b[k].width &&
               !memcmp(a[k].data, b[k].data, sizeof(float) * a[k].channels * a[k].height * a[k].width);
    if (same) {
        emote_tensors_free(a, 12);
        emote_tensors_free(b, 12);
    }
    free(x);
    emote_model_close(fresh);
    return same;
}

TEST(detector_runs_reusing_buffers_give_the_same_outputs) {
    emote_model *m = open_detector(failures);
    if (!m) return;
    const int sizes[][2] = {{96, 128}, {480, 640}, {64, 64}, {480, 640}, {160, 96}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        CHECKF(run_fresh_and_reused(m, sizes[i][0], sizes[i][1], failures), "%dx%d after %zu runs", sizes[i][1],
               sizes[i][0], i);
    emote_model_close(m);
}
