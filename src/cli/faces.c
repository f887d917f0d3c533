/* --faces: each input image -> the faces the built-in detector finds -> one aligned,
 * preprocessed crop per face in the batch (largest first). The library does the work
 * (emote_detect_faces, emote_face_crop); this file fills the batch and writes the face fields.
 * Its options are among the engine's (cli.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "stb_image_write.h"
#include "thread_pool.h"
#include "util.h"

bool faces_open(faces_state *st, const engine_options *eo) {
    const faces_options *o = &eo->faces;
    memset(st, 0, sizeof *st);
    if (!o->on) return true;
    if (eo->tta || eo->stdin_image) {
        fprintf(stderr, "emote: --faces does not yet work with %s\n", eo->tta ? "--tta" : "--stdin-image");
        return false;
    }
    emote_error err;
    if (!(st->detector = emote_model_open_builtin_named("yunet", &err))) {
        fprintf(stderr, "emote: --faces: %s\n", err.message);
        return false;
    }
    return true;
}

void faces_close(faces_state *st) {
    emote_model_close(st->detector);
    memset(st, 0, sizeof *st);
}

/* DIR/<stem>.face<N>.png */
static void save_crop(const char *dir, const char *path, int index, const emote_image *crop) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *dot = strrchr(base, '.');
    int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    char name[4096];
    snprintf(name, sizeof name, "%s/%.*s.face%d.png", dir, stem, base, index);
    if (!stbi_write_png(name, crop->width, crop->height, crop->channels, crop->pixels, crop->width * crop->channels))
        fprintf(stderr, "emote: %s: cannot write the face crop\n", name);
}

int faces_limit(const faces_options *o) { return o->largest_only ? 1 : o->max_faces; }

/* Each face is classified at these crop scales (times EMOTE_FACE_CROP_SCALE) and the
 * probabilities averaged: a detector's box frames a face differently from the crops the
 * classifier learnt from, and the average is less sensitive to that (README, framing). */
static const float framings[FACE_FRAMINGS] = {0.9f, 1.0f, 1.1f};

int faces_prepare(const faces_state *st, const engine_options *eo, const emote_model *classifier, const char *path,
                  const emote_image *image, float *rows, emote_face **faces, emote_error *err) {
    const faces_options *o = &eo->faces;
    emote_detect_options d = {o->min_score, 0.45f, o->detect_size, 0};
    int n, limit = faces_limit(o);
    if (emote_detect_faces(st->detector, image, &d, faces, &n, err)) return -1;
    if (n > limit) {
        if (!eo->quiet && !o->largest_only) {
            char message[EMOTE_ERROR_MAX];
            format_message(message, sizeof message, "%s: %d faces found, classifying the %d largest (--max-faces)",
                           path, n, limit);
            print_error(message);
        }
        n = limit;
    }
    const emote_input_spec *in = emote_model_input(classifier);
    int side = in->width > in->height ? in->width : in->height;
    for (int k = 0; k < n; k++) {
        float box = (*faces)[k].w > (*faces)[k].h ? (*faces)[k].w : (*faces)[k].h;
        for (int f = 0; f < FACE_FRAMINGS; f++) {
            float scale = EMOTE_FACE_CROP_SCALE * framings[f];
            int size = (int)(box * scale);
            size = size < side ? side : size > 4 * side ? 4 * side : size;
            emote_image crop;
            if (emote_face_crop(image, &(*faces)[k], scale, size, &crop, err)) return -1;
            float *row = rows + (size_t)(k * FACE_FRAMINGS + f) * emote_input_floats(classifier);
            emote_status s = emote_preprocess(in, &crop, row, err);
            if (!s && o->save_crops && framings[f] == 1.0f) save_crop(o->save_crops, path, k, &crop);
            emote_image_free(&crop);
            if (s) return -1;
        }
    }
    return n;
}

/* The mean of face k's FACE_FRAMINGS rows of probabilities, written over the first. */
static float *average_framings(float *probs, int classes) {
    for (int c = 0; c < classes; c++) {
        double sum = 0;
        for (int f = 0; f < FACE_FRAMINGS; f++) sum += probs[(size_t)f * classes + c];
        probs[c] = (float)(sum / FACE_FRAMINGS);
    }
    return probs;
}

/* ---- records ------------------------------------------------------------------ */

static const char *const landmark_columns[10] = {"right_eye_x", "right_eye_y", "left_eye_x", "left_eye_y",
                                                 "nose_x", "nose_y", "right_mouth_x", "right_mouth_y",
                                                 "left_mouth_x", "left_mouth_y"};

void faces_write_header(FILE *f, char sep) {
    fprintf(f, "%cface%cbox_x%cbox_y%cbox_w%cbox_h%cface_score", sep, sep, sep, sep, sep, sep);
    for (int i = 0; i < 10; i++) fprintf(f, "%c%s", sep, landmark_columns[i]);
}

/* Coordinates with one decimal: detection is not more precise than a tenth of a pixel. */
void faces_write_columns(FILE *f, char sep, const result *r) {
    if (!r->face) {
        for (int i = 0; i < 16; i++) fputc(sep, f);
        return;
    }
    const emote_face *b = r->face;
    fprintf(f, "%c%d%c%.1f%c%.1f%c%.1f%c%.1f%c%.4f", sep, r->face_index, sep, (double)b->x, sep, (double)b->y, sep,
            (double)b->w, sep, (double)b->h, sep, (double)b->score);
    for (int i = 0; i < 10; i++) fprintf(f, "%c%.1f", sep, (double)b->landmarks[i]);
}

void faces_write_json(FILE *f, const result *r) {
    if (!r->face) return;
    const emote_face *b = r->face;
    fprintf(f, ",\"face\":%d,\"box\":[%.1f,%.1f,%.1f,%.1f],\"face_score\":%.4f,\"landmarks\":[", r->face_index,
            (double)b->x, (double)b->y, (double)b->w, (double)b->h, (double)b->score);
    for (int i = 0; i < 10; i++) fprintf(f, "%s%.1f", i ? "," : "", (double)b->landmarks[i]);
    fputc(']', f);
}

/* ---- the batch loop ------------------------------------------------------------ */

/* One input on its way through the classifier: its faces take rows row .. row + num_faces - 1. */
typedef struct {
    char *path;
    char error[EMOTE_ERROR_MAX];
    bool ok;
    int row, num_faces;
    emote_face *faces; /* malloc'd, largest first */
} face_slot;

int faces_threads(const engine_options *o) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return o->threads > 0 ? o->threads : cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
}

int faces_batch_capacity(const engine_options *o) {
    return o->batch + faces_threads(o) * faces_limit(&o->faces) * FACE_FRAMINGS;
}

/* Inputs are prepared a group at a time, one per thread: decoding a photo and finding its
 * faces is most of the work. Each writes its rows into its own part of `rows`. */
typedef struct {
    engine *e;
    face_slot *slots;
    float *rows; /* per slot: faces_limit() * FACE_FRAMINGS rows */
} face_group;

static size_t slot_floats(const engine *e) {
    return (size_t)faces_limit(&e->options->faces) * FACE_FRAMINGS * emote_input_floats(e->model);
}

/* Task: decodes at full size (boxes are in source pixels), detects, crops and preprocesses. */
static void prepare(void *arg, int task, int thread) {
    (void)thread;
    const face_group *g = arg;
    face_slot *s = &g->slots[task];
    if (!s->path || s->error[0]) return;
    const engine_options *o = g->e->options;
    emote_image image = {0};
    emote_error err;
    const emote_decode_options decode = {.ignore_orientation = o->no_exif};
    int n = -1;
    if (!emote_image_load_with(s->path, &decode, &image, &err))
        n = faces_prepare(&g->e->faces, o, g->e->model, s->path, &image, g->rows + task * slot_floats(g->e), &s->faces,
                          &err);
    if (n < 0) snprintf(s->error, sizeof s->error, "%s", err.message);
    s->ok = n >= 0;
    s->num_faces = n > 0 ? n : 0;
    emote_image_free(&image);
}

static bool all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* Floats per row of model output: probabilities, or features for adapt. */
static int output_width(const engine *e) {
    return e->features ? emote_model_feature_size(e->model) : emote_model_num_classes(e->model);
}

/* Hands out one result per face (one "no face found" when none); true if the input failed. */
static bool report(engine *e, face_slot *s, float *probs, const char *batch_error, result_fn on_result,
                   void *user, bool *go_on) {
    int classes = output_width(e);
    bool no_face = s->path && s->ok && s->num_faces == 0, failed = false;
    for (int k = 0; k < (s->num_faces > 0 ? s->num_faces : 1); k++) {
        result r = {s->path ? s->path : "?", NULL, NULL, s->faces ? &s->faces[k] : NULL, k, no_face, NULL};
        if (!s->path) r.error = "out of memory";
        else if (!s->ok) r.error = s->error;
        else if (no_face) r.error = "no face found";
        else if (batch_error) r.error = batch_error;
        else r.probs = average_framings(probs + (size_t)(s->row + k * FACE_FRAMINGS) * classes, classes);
        if (r.probs && !all_finite(r.probs, classes)) {
            format_message(s->error, sizeof s->error, "%s: model output is not finite", r.path);
            r.probs = NULL;
            r.error = s->error;
        }
        if (e->features) r.features = r.probs, r.probs = NULL;
        if (r.error && (!no_face || e->options->faces.require)) failed = true;
        if (*go_on) *go_on = on_result(user, &r);
    }
    free(s->path);
    free(s->faces);
    return failed;
}

static bool next_unskipped(input_source *src, skip_fn skip, void *skip_user, input_item *item) {
    do {
        if (!input_source_next(src, item)) return false;
    } while (!item->error && skip && skip(skip_user, item->path));
    return true;
}

/* --faces has its own loop (emote_pipeline_run's inputs give one result each): inputs are
 * decoded and searched -j at a time, each on a thread, then the faces of up to -b images
 * are classified in one batch. */
run_counts classify_faces(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                          void *user) {
    const engine_options *o = e->options;
    run_counts counts = {0, 0};
    const int workers = faces_threads(o), capacity = faces_batch_capacity(o);
    const int classes = output_width(e);
    const size_t row_floats = emote_input_floats(e->model);
    face_slot *slots = calloc_array((size_t)o->batch + workers, sizeof *slots);
    float *inputs = alloc_array(row_floats, (size_t)capacity * sizeof(float));
    float *probs = alloc_array((size_t)classes, (size_t)capacity * sizeof(float));
    float *group_rows = alloc_array(slot_floats(e), (size_t)workers * sizeof(float));
    thread_pool *pool = workers > 1 ? pool_new(workers) : NULL;
    bool more = slots && inputs && probs && group_rows && (workers == 1 || pool), go_on = true;
    if (!more) {
        fprintf(stderr, "emote: out of memory\n");
        counts.failed = 1;
    }
    while (more && go_on) {
        int used = 0, rows = 0;
        input_item item;
        while (used < o->batch && rows < o->batch && more) {
            face_group g = {e, slots + used, group_rows};
            int size = 0;
            while (size < workers && (more = next_unskipped(src, skip, skip_user, &item))) {
                g.slots[size] = (face_slot){.path = str_dup(item.path)};
                if (item.error) snprintf(g.slots[size].error, sizeof g.slots[size].error, "%s", item.error);
                size++;
            }
            pool_run(pool, prepare, &g, size);
            for (int i = 0; i < size; i++, used++) { /* the rows in input order */
                face_slot *s = &slots[used];
                s->row = rows;
                memcpy(inputs + (size_t)rows * row_floats, group_rows + i * slot_floats(e),
                       (size_t)s->num_faces * FACE_FRAMINGS * row_floats * sizeof(float));
                rows += s->num_faces * FACE_FRAMINGS;
            }
        }
        emote_error err;
        emote_status failed = rows == 0 ? EMOTE_OK
                              : e->features ? emote_features(e->session, inputs, rows, probs, &err)
                                            : emote_classify(e->session, inputs, rows, probs, &err);
        const char *batch_error = failed ? err.message : NULL;
        for (int i = 0; i < used; i++) {
            counts.done++;
            if (report(e, &slots[i], probs, batch_error, on_result, user, &go_on)) counts.failed++;
        }
    }
    pool_free(pool);
    free(group_rows);
    free(slots);
    free(inputs);
    free(probs);
    return counts;
}
