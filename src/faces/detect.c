/* Face detection with YuNet (libfacedetection) run by our own engine (src/net.c): image ->
 * RGB at most detect_size on its longer side -> zero-padded to the model's size multiple ->
 * the graph -> decode the stride-8/16/32 heads -> score threshold -> NMS -> source pixels.
 * Decoding follows libfacedetection's bbox_decode / kps_decode / detection_output:
 *   cx = (dx + col) * s, cy = (dy + row) * s, w = exp(dw) * s, h = exp(dh) * s,
 *   landmark k = ((lx_k + col) * s, (ly_k + row) * s), score = sqrt(sigmoid(cls) * sigmoid(obj)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "util.h"

#define NUM_STRIDES 3
#define NMS_TOP_K 1000 /* candidates kept before NMS, as the reference */
static const int strides[NUM_STRIDES] = {8, 16, 32};
static const char *const head_names[4] = {"cls", "bbox", "obj", "kps"};
enum { HEAD_CLS, HEAD_BBOX, HEAD_OBJ, HEAD_KPS, NUM_HEADS };
static const int head_channels[NUM_HEADS] = {1, 4, 1, 10};

typedef struct {
    emote_face *items;
    int count, capacity;
} face_list;

static bool face_list_add(face_list *l, const emote_face *f) {
    emote_face *items = array_reserve_one(l->items, l->count, &l->capacity, sizeof *items);
    if (!items) return false;
    l->items = items;
    l->items[l->count++] = *f;
    return true;
}

/* The detector's 12 outputs by stride and head, checked against what decoding needs. */
static emote_status find_heads(const emote_model *m, const emote_tensor *outputs, const emote_tensor *heads[NUM_STRIDES][NUM_HEADS],
                               emote_error *err) {
    for (int s = 0; s < NUM_STRIDES; s++) {
        for (int h = 0; h < NUM_HEADS; h++) {
            char name[32];
            snprintf(name, sizeof name, "%s_%d", head_names[h], strides[s]);
            heads[s][h] = NULL;
            for (int i = 0; i < emote_model_num_outputs(m); i++)
                if (strcmp(emote_model_output_name(m, i), name) == 0) heads[s][h] = &outputs[i];
            if (!heads[s][h] || heads[s][h]->channels != head_channels[h] ||
                heads[s][h]->height != heads[s][HEAD_CLS]->height || heads[s][h]->width != heads[s][HEAD_CLS]->width)
                return emote_fail(err, EMOTE_ERR_FORMAT, "%s: not a face detector: no %d-channel output '%s'",
                                  emote_model_name(m), head_channels[h], name);
        }
    }
    return EMOTE_OK;
}

static float sigmoid(float v) { return 1.0f / (1.0f + expf(-fminf(fmaxf(v, -88.3762626647949f), 88.3762626647949f))); }

/* Candidates of one stride whose score reaches min_score, in network-input pixels. */
static bool decode_stride(const emote_tensor *const head[NUM_HEADS], int stride, float min_score, face_list *out) {
    const int rows = head[HEAD_CLS]->height, cols = head[HEAD_CLS]->width;
    const size_t plane = (size_t)rows * cols;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            size_t at = (size_t)r * cols + c;
            float score = sqrtf(sigmoid(head[HEAD_CLS]->data[at]) * sigmoid(head[HEAD_OBJ]->data[at]));
            if (!(score >= min_score)) continue;
            const float *b = head[HEAD_BBOX]->data, *k = head[HEAD_KPS]->data;
            float cx = (b[at] + c) * stride, cy = (b[plane + at] + r) * stride;
            float w = expf(b[2 * plane + at]) * stride, h = expf(b[3 * plane + at]) * stride;
            emote_face f = {.x = cx - w / 2, .y = cy - h / 2, .w = w, .h = h, .score = score};
            for (int p = 0; p < 5; p++) {
                f.landmarks[2 * p] = (k[(2 * p) * plane + at] + c) * stride;
                f.landmarks[2 * p + 1] = (k[(2 * p + 1) * plane + at] + r) * stride;
            }
            if (!face_list_add(out, &f)) return false;
        }
    }
    return true;
}

static float iou(const emote_face *a, const emote_face *b) {
    float iw = fminf(a->x + a->w, b->x + b->w) - fmaxf(a->x, b->x);
    float ih = fminf(a->y + a->h, b->y + b->h) - fmaxf(a->y, b->y);
    if (iw <= 0 || ih <= 0) return 0;
    float inter = iw * ih;
    return inter / (a->w * a->h + b->w * b->h - inter);
}

static int by_score_desc(const void *a, const void *b) {
    float sa = ((const emote_face *)a)->score, sb = ((const emote_face *)b)->score;
    return (sa < sb) - (sa > sb);
}

static int by_area_desc(const void *a, const void *b) {
    const emote_face *fa = a, *fb = b;
    float da = fa->w * fa->h, db = fb->w * fb->h;
    if (da != db) return (da < db) - (da > db);
    return by_score_desc(a, b);
}

/* Greedy NMS over the best NMS_TOP_K, best first, in place; returns the count kept. qsort
 * is not stable: ties in score are ordered by position so the result does not depend on it. */
static int nms(emote_face *faces, int count, float max_iou) {
    if (count > 1) qsort(faces, (size_t)count, sizeof *faces, by_score_desc);
    if (count > NMS_TOP_K) count = NMS_TOP_K;
    int kept = 0;
    for (int i = 0; i < count; i++) {
        bool keep = true;
        for (int j = 0; j < kept && keep; j++) keep = iou(&faces[i], &faces[j]) <= max_iou;
        if (keep) faces[kept++] = faces[i];
    }
    return kept;
}

/* RGB, at most max_side on its longer side (never enlarged), in *scaled; *scale: scaled / source. */
static emote_status detector_image(const emote_image *src, int max_side, emote_image *scaled, float *scale,
                                   emote_error *err) {
    int longer = src->width > src->height ? src->width : src->height;
    *scale = max_side > 0 && longer > max_side ? (float)max_side / (float)longer : 1.0f;
    int w = (int)lroundf(src->width * *scale), h = (int)lroundf(src->height * *scale);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w == src->width && h == src->height) {
        *scale = 1.0f;
        *scaled = *src;
        scaled->pixels = NULL; /* borrowed: see fill_input */
        return EMOTE_OK;
    }
    *scale = (float)w / (float)src->width;
    return emote_image_resize(src, w, h, scaled, err);
}

/* CHW floats, normalised per the model's input spec, zero beyond the image (padding). Each
 * channel's 256 values are normalised once, by the same expression, into a table. */
static void fill_input(const emote_input_spec *spec, const emote_image *img, int ph, int pw, float *x) {
    float table[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - spec->mean[c]) / spec->std[c];
    const int ch = img->channels, w = img->width, h = img->height;
    for (int c = 0; c < 3; c++) {
        const float *t = table[c];
        const int from = ch >= 3 ? c : 0;
        for (int y = 0; y < h; y++) {
            const unsigned char *row = img->pixels + (size_t)y * w * ch + from;
            float *dst = x + ((size_t)c * ph + y) * pw;
            for (int xx = 0; xx < w; xx++) dst[xx] = t[row[(size_t)xx * ch]];
            for (int xx = w; xx < pw; xx++) dst[xx] = 0.0f;
        }
        memset(x + ((size_t)c * ph + h) * pw, 0, sizeof(float) * (size_t)(ph - h) * pw);
    }
}

static emote_status run_detector(const emote_model *m, const emote_image *img, const emote_detect_options *o,
                                 face_list *faces, emote_error *err) {
    int multiple = emote_model_size_multiple(m) > 0 ? emote_model_size_multiple(m) : 1;
    int ph = (img->height + multiple - 1) / multiple * multiple, pw = (img->width + multiple - 1) / multiple * multiple;
    float *x = alloc_array((size_t)3 * ph, (size_t)pw * sizeof(float));
    emote_tensor *outputs = calloc_array((size_t)emote_model_num_outputs(m), sizeof *outputs);
    emote_status s = x && outputs ? EMOTE_OK : emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
    if (!s) {
        fill_input(emote_model_input(m), img, ph, pw, x);
        s = emote_model_run(m, x, ph, pw, outputs, err);
    }
    const emote_tensor *heads[NUM_STRIDES][NUM_HEADS];
    if (!s) s = find_heads(m, outputs, heads, err);
    for (int i = 0; !s && i < NUM_STRIDES; i++)
        if (!decode_stride(heads[i], strides[i], o->min_score, faces)) s = emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
    if (outputs) emote_tensors_free(outputs, emote_model_num_outputs(m));
    free(outputs);
    free(x);
    return s;
}

/* Quarter turns: `turns` clockwise turns of a w x h image. The point (u, v) of the turned
 * image lies at (*x, *y) of the image before it was turned. */
static void unturn_point(int turns, float w, float h, float u, float v, float *x, float *y) {
    switch (turns) {
    case 1: *x = v; *y = h - u; break;
    case 2: *x = w - u; *y = h - v; break;
    case 3: *x = w - v; *y = u; break;
    default: *x = u; *y = v; break;
    }
}

static emote_status turn_image(const emote_image *src, int turns, emote_image *out, emote_error *err) {
    const int ch = src->channels;
    out->width = turns % 2 ? src->height : src->width;
    out->height = turns % 2 ? src->width : src->height;
    out->channels = ch;
    if (!(out->pixels = alloc_array((size_t)out->width * out->height, (size_t)ch)))
        return emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
    for (int v = 0; v < out->height; v++) {
        for (int u = 0; u < out->width; u++) {
            float x, y;
            unturn_point(turns, (float)src->width, (float)src->height, (float)u + 0.5f, (float)v + 0.5f, &x, &y);
            memcpy(out->pixels + ((size_t)v * out->width + u) * ch,
                   src->pixels + ((size_t)(int)y * src->width + (int)x) * ch, (size_t)ch);
        }
    }
    return EMOTE_OK;
}

/* A face found in the image turned `turns` times, in the coordinates of the w x h image
 * before the turn. Landmarks keep their identity, so the crop turns the face upright. */
static void unturn_face(emote_face *f, int turns, float w, float h) {
    float x0, y0, x1, y1;
    unturn_point(turns, w, h, f->x, f->y, &x0, &y0);
    unturn_point(turns, w, h, f->x + f->w, f->y + f->h, &x1, &y1);
    f->x = fminf(x0, x1);
    f->y = fminf(y0, y1);
    f->w = fabsf(x1 - x0);
    f->h = fabsf(y1 - y0);
    for (int i = 0; i < 10; i += 2) unturn_point(turns, w, h, f->landmarks[i], f->landmarks[i + 1], &f->landmarks[i], &f->landmarks[i + 1]);
}

/* Candidates of the image turned 90, 180 and 270 degrees, added to `faces` in img's pixels. */
static emote_status detect_turned(const emote_model *m, const emote_image *img, const emote_detect_options *o,
                                  face_list *faces, emote_error *err) {
    emote_status s = EMOTE_OK;
    for (int turns = 1; turns < 4 && !s; turns++) {
        emote_image turned;
        if ((s = turn_image(img, turns, &turned, err))) break;
        int first = faces->count;
        s = run_detector(m, &turned, o, faces, err);
        for (int i = first; i < faces->count; i++)
            unturn_face(&faces->items[i], turns, (float)img->width, (float)img->height);
        emote_image_free(&turned);
    }
    return s;
}

static void to_source_pixels(emote_face *f, float scale) {
    f->x /= scale;
    f->y /= scale;
    f->w /= scale;
    f->h /= scale;
    for (int i = 0; i < 10; i++) f->landmarks[i] /= scale;
}

emote_status emote_detect_faces(const emote_model *detector, const emote_image *image, const emote_detect_options *options,
                                emote_face **faces, int *count, emote_error *err) {
    emote_detect_options o = options ? *options : (emote_detect_options)EMOTE_DETECT_DEFAULTS;
    if (!faces || !count)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_detect_faces: no %s to fill (NULL)", !faces ? "faces" : "count");
    *faces = NULL;
    *count = 0;
    if (!detector) return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_detect_faces: no detector model (NULL)");
    emote_status s = check_image_argument(image, "emote_detect_faces", err);
    if (s) return s;
    if (emote_model_input(detector)->channels != 3)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: not a face detector (input is not RGB)", emote_model_name(detector));
    emote_image rgb;
    float scale;
    s = detector_image(image, o.detect_size, &rgb, &scale, err);
    if (s) return s;
    bool borrowed = rgb.pixels == NULL;
    if (borrowed) rgb.pixels = image->pixels;
    face_list list = {0};
    s = run_detector(detector, &rgb, &o, &list, err);
    if (!s && o.any_angle) s = detect_turned(detector, &rgb, &o, &list, err);
    if (!borrowed) emote_image_free(&rgb);
    if (s) {
        free(list.items);
        return s;
    }
    list.count = nms(list.items, list.count, o.nms_iou);
    for (int i = 0; i < list.count; i++) to_source_pixels(&list.items[i], scale);
    *faces = list.items;
    *count = emote_keep_best_faces(list.items, list.count, o.max_faces > 0 ? o.max_faces : list.count);
    return EMOTE_OK;
}

static float area(const emote_face *f) { return f->w * f->h; }

static int by_score_then_area_desc(const void *a, const void *b) {
    const emote_face *fa = a, *fb = b;
    if (fa->score != fb->score) return by_score_desc(a, b);
    return (area(fa) < area(fb)) - (area(fa) > area(fb));
}

int emote_keep_best_faces(emote_face *faces, int count, int keep) {
    if (!faces || count < 1) return 0;
    if (keep < count) {
        qsort(faces, (size_t)count, sizeof *faces, by_score_then_area_desc);
        count = keep > 0 ? keep : 0;
    }
    if (count > 1) qsort(faces, (size_t)count, sizeof *faces, by_area_desc);
    return count;
}

int emote_main_face(const emote_face *faces, int count) {
    if (!faces || count < 1) return -1;
    float best = faces[0].score;
    for (int i = 1; i < count; i++) best = fmaxf(best, faces[i].score);
    int pick = -1;
    for (int i = 0; i < count; i++) {
        if (faces[i].score < best - EMOTE_MAIN_FACE_MARGIN) continue;
        if (pick < 0 || area(&faces[i]) > area(&faces[pick]) ||
            (area(&faces[i]) == area(&faces[pick]) && faces[i].score > faces[pick].score))
            pick = i;
    }
    return pick;
}

void emote_face_clip(emote_face *face, int width, int height) {
    if (!face) return;
    float x0 = fminf(fmaxf(face->x, 0.0f), (float)width), y0 = fminf(fmaxf(face->y, 0.0f), (float)height);
    float x1 = fminf(fmaxf(face->x + face->w, 0.0f), (float)width);
    float y1 = fminf(fmaxf(face->y + face->h, 0.0f), (float)height);
    face->x = x0;
    face->y = y0;
    face->w = x1 - x0;
    face->h = y1 - y0;
}
