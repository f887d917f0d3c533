/* An image's faces as classifier inputs: detect, choose (max_faces or the main face), then
 * crop each face at EMOTE_FACE_FRAMINGS scales and preprocess the crops. */
#include "faces/face_crops.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Each face is classified at these crop scales (times EMOTE_FACE_CROP_SCALE) and the
 * probabilities averaged: a detector's box frames a face differently from the crops the
 * classifier learnt from, and the average is less sensitive to that (README, framing). */
static const float framings[EMOTE_FACE_FRAMINGS] = {0.9f, 1.0f, 1.1f};

void image_faces_free(image_faces *f) {
    for (int k = 0; f->crops && k < f->count; k++) emote_image_free(&f->crops[k]);
    free(f->crops);
    free(f->faces);
    free(f->rows);
    memset(f, 0, sizeof *f);
}

/* Detects every face, then keeps the main face or the max_faces most confident. */
static emote_status find_faces(const face_stage *stage, const emote_image *image, image_faces *out,
                               emote_error *err) {
    emote_detect_options all = stage->detect;
    all.max_faces = 0;
    emote_status s = emote_detect_faces(stage->detector, image, &all, &out->faces, &out->found, err);
    if (s) return s;
    out->count = out->found;
    if (stage->main_face_only && out->count > 1) {
        out->faces[0] = out->faces[emote_main_face(out->faces, out->count)];
        out->count = 1;
    } else if (stage->detect.max_faces > 0) {
        out->count = emote_keep_best_faces(out->faces, out->count, stage->detect.max_faces);
    }
    return EMOTE_OK;
}

/* The side of a crop at `scale`: the face's own resolution, at least the model's input and
 * at most 4 times it. */
static int crop_side(const emote_face *face, float scale, const emote_input_spec *in) {
    int side = in->width > in->height ? in->width : in->height;
    float box = face->w > face->h ? face->w : face->h;
    int size = (int)(box * scale);
    return size < side ? side : size > 4 * side ? 4 * side : size;
}

/* Face k's crops into its rows; the 1.0 crop kept in out->crops[k] when asked. */
static emote_status crop_face(const emote_model *classifier, const emote_image *image, image_faces *out, int k,
                              emote_error *err) {
    const emote_input_spec *in = emote_model_input(classifier);
    const size_t row_floats = emote_input_floats(classifier);
    for (int f = 0; f < EMOTE_FACE_FRAMINGS; f++) {
        float scale = EMOTE_FACE_CROP_SCALE * framings[f];
        emote_image crop;
        emote_status s = emote_face_crop(image, &out->faces[k], scale, crop_side(&out->faces[k], scale, in), &crop, err);
        if (s) return s;
        s = emote_preprocess(in, &crop, out->rows + (size_t)(k * EMOTE_FACE_FRAMINGS + f) * row_floats, err);
        if (!s && out->crops && framings[f] == 1.0f) out->crops[k] = crop;
        else emote_image_free(&crop);
        if (s) return s;
    }
    return EMOTE_OK;
}

emote_status find_face_crops(const face_stage *stage, const emote_model *classifier, const char *name,
                             const emote_image *image, image_faces *out, emote_error *err) {
    memset(out, 0, sizeof *out);
    emote_status s = find_faces(stage, image, out, err);
    if (!s && out->count > 0) {
        out->rows = alloc_array((size_t)out->count * EMOTE_FACE_FRAMINGS, emote_input_floats(classifier) * sizeof(float));
        out->crops = stage->keep_crops ? calloc_array((size_t)out->count, sizeof *out->crops) : NULL;
        if (!out->rows || (stage->keep_crops && !out->crops))
            s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory for %d faces", name, out->count);
    }
    for (int k = 0; !s && k < out->count; k++) {
        s = crop_face(classifier, image, out, k, err);
        emote_face_clip(&out->faces[k], image->width, image->height); /* for the result; the crops used the whole box */
    }
    if (s) image_faces_free(out);
    return s;
}

float *average_framings(float *rows, int width) {
    for (int c = 0; c < width; c++) {
        double sum = 0;
        for (int f = 0; f < EMOTE_FACE_FRAMINGS; f++) sum += rows[(size_t)f * width + c];
        rows[c] = (float)(sum / EMOTE_FACE_FRAMINGS);
    }
    return rows;
}
