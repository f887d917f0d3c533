/* Face detection vs libfacedetection's own reference_runner (tests/fixtures/faces/reference.jsonl,
 * made from the composed scenes): every reference face found, boxes within 2 px, scores
 * within 0.02, no extra faces. The reference truncates boxes to ints and scores to
 * percent, so ours are compared after the same truncation. */
#include <math.h>
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
