/* --faces: each input image -> the faces the built-in detector finds -> one aligned,
 * preprocessed crop per face in the batch (largest first). The library does the work
 * (emote_detect_faces, emote_face_crop); this file fills the batch and writes the face fields.
 * Its options are among the engine's (cli.h). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
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

/* ---- --save-crops ------------------------------------------------------------- */

#define MAX_CROP_SUFFIX 100000

static void write_to_stream(void *stream, void *data, int size) {
    if (size > 0) fwrite(data, 1, (size_t)size, stream);
}

static bool encode_png(const emote_image *crop, encoded_crop *out) {
    FILE *f = open_memstream(&out->png, &out->size);
    if (!f) return false;
    bool ok = stbi_write_png_to_func(write_to_stream, f, crop->width, crop->height, crop->channels, crop->pixels,
                                     crop->width * crop->channels) != 0;
    if (fclose(f) != 0) ok = false;
    return ok;
}

/* DIR/STEM.face<K>.png for n == 1, else DIR/STEM~n.face<K>.png (STEM: the input's file name
 * without its extension). */
static char *crop_path(const char *dir, const char *input, int n, int k) {
    const char *base = strrchr(input, '/') ? strrchr(input, '/') + 1 : input;
    const char *dot = strrchr(base, '.');
    int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    char suffix[16] = "", *path;
    if (n > 1) snprintf(suffix, sizeof suffix, "~%d", n);
    return asprintf(&path, "%s/%.*s%s.face%d.png", dir, stem, base, suffix, k) < 0 ? NULL : path;
}

/* "INPUT: cannot save its face crop CROP: reason", both names shortened to keep the reason. */
static void crop_error(char *error, size_t cap, const char *input, const char *crop, const char *reason) {
    char short_crop[256];
    shorten_name(crop, short_crop, sizeof short_crop);
    format_message(error, cap, "%s: cannot save its face crop %s: %s", input, short_crop, reason);
}

typedef enum { CROP_NAMES_FREE, CROP_NAMES_TAKEN, CROP_NAMES_ERROR } crop_names;

/* Whether names n of all the crops are free or hold the same crops already. */
static crop_names examine_crop_names(const char *dir, const char *input, int n, const encoded_crop *crops,
                                     int count, char *error, size_t cap) {
    for (int k = 0; k < count; k++) {
        char *name = crop_path(dir, input, n, k);
        struct stat st;
        crop_names state = CROP_NAMES_FREE;
        if (!name) {
            format_message(error, cap, "%s: out of memory", input);
            state = CROP_NAMES_ERROR;
        } else if (lstat(name, &st) == 0) {
            if (!file_holds_bytes(name, crops[k].png, crops[k].size)) state = CROP_NAMES_TAKEN;
        } else if (errno != ENOENT) {
            crop_error(error, cap, input, name, strerror(errno));
            state = CROP_NAMES_ERROR;
        }
        free(name);
        if (state != CROP_NAMES_FREE) return state;
    }
    return CROP_NAMES_FREE;
}

/* Writes crop k as name n unless it is there already; ATOMIC_NAME_TAKEN when another file
 * took the name meanwhile. */
static atomic_publish_status write_crop(const char *dir, const char *input, int n, int k, const encoded_crop *crop,
                                        char *error, size_t cap) {
    char *name = crop_path(dir, input, n, k);
    if (!name) {
        format_message(error, cap, "%s: out of memory", input);
        return ATOMIC_FAILED;
    }
    atomic_file a = {0};
    emote_error err;
    atomic_publish_status s = ATOMIC_FAILED;
    if (file_holds_bytes(name, crop->png, crop->size)) s = ATOMIC_PUBLISHED;
    else if (!atomic_file_begin(&a, dir, strrchr(name, '/') + 1, &err) && fwrite(crop->png, 1, crop->size, a.f) == crop->size &&
             !atomic_file_finish(&a, &err))
        s = atomic_file_publish(&a, name, false, &err);
    else if (a.f) snprintf(err.message, sizeof err.message, "%s", strerror(errno));
    if (s == ATOMIC_NAME_TAKEN && file_holds_bytes(name, crop->png, crop->size)) s = ATOMIC_PUBLISHED;
    if (s == ATOMIC_FAILED) crop_error(error, cap, input, name, err.message);
    atomic_file_discard(&a);
    free(name);
    return s;
}

/* Saves an input's crops under the first names n that are free or already hold them, so that
 * inputs with the same file name keep apart, nothing is overwritten and a re-run adds
 * nothing. False with error when a crop cannot be written. */
static bool save_crops(const char *dir, const char *input, const encoded_crop *crops, int count, char *error,
                       size_t cap) {
    for (int n = 1; n <= MAX_CROP_SUFFIX; n++) {
        crop_names names = examine_crop_names(dir, input, n, crops, count, error, cap);
        if (names == CROP_NAMES_ERROR) return false;
        if (names == CROP_NAMES_TAKEN) continue;
        atomic_publish_status s = ATOMIC_PUBLISHED;
        for (int k = 0; k < count && s == ATOMIC_PUBLISHED; k++) s = write_crop(dir, input, n, k, &crops[k], error, cap);
        if (s == ATOMIC_PUBLISHED) return true;
        if (s == ATOMIC_FAILED) return false;
    }
    format_message(error, cap, "%s: cannot save its face crops: too many names taken in %s", input, dir);
    return false;
}

int faces_limit(const faces_options *o) { return o->main_face_only ? 1 : o->max_faces; }

/* Each face is classified at these crop scales (times EMOTE_FACE_CROP_SCALE) and the
 * probabilities averaged: a detector's box frames a face differently from the crops the
 * classifier learnt from, and the average is less sensitive to that (README, framing). */
static const float framings[FACE_FRAMINGS] = {0.9f, 1.0f, 1.1f};

int faces_prepare(const faces_state *st, const engine_options *eo, const emote_model *classifier, const char *path,
                  const emote_image *image, float **rows, emote_face **faces, encoded_crop *crops, emote_error *err) {
    const faces_options *o = &eo->faces;
    emote_detect_options d = {o->min_score, 0.45f, o->detect_size, 0, o->any_angle};
    int n, limit = faces_limit(o);
    if (emote_detect_faces(st->detector, image, &d, faces, &n, err)) return -1;
    if (o->main_face_only && n > 1) {
        (*faces)[0] = (*faces)[emote_main_face(*faces, n)];
        n = 1;
    } else if (n > limit) {
        if (!eo->quiet) {
            char message[EMOTE_ERROR_MAX];
            format_message(message, sizeof message,
                           "%s: %d faces found, classifying the %d most confident (--max-faces)", path, n, limit);
            print_error(message);
        }
        n = emote_keep_best_faces(*faces, n, limit);
    }
    const emote_input_spec *in = emote_model_input(classifier);
    int side = in->width > in->height ? in->width : in->height;
    if (n > 0 && !(*rows = alloc_array((size_t)n * FACE_FRAMINGS, emote_input_floats(classifier) * sizeof(float)))) {
        emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory for %d faces", path, n);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        float box = (*faces)[k].w > (*faces)[k].h ? (*faces)[k].w : (*faces)[k].h;
        for (int f = 0; f < FACE_FRAMINGS; f++) {
            float scale = EMOTE_FACE_CROP_SCALE * framings[f];
            int size = (int)(box * scale);
            size = size < side ? side : size > 4 * side ? 4 * side : size;
            emote_image crop;
            if (emote_face_crop(image, &(*faces)[k], scale, size, &crop, err)) return -1;
            float *row = *rows + (size_t)(k * FACE_FRAMINGS + f) * emote_input_floats(classifier);
            emote_status s = emote_preprocess(in, &crop, row, err);
            if (!s && crops && framings[f] == 1.0f && !encode_png(&crop, &crops[k]))
                s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
            emote_image_free(&crop);
            if (s) return -1;
        }
        emote_face_clip(&(*faces)[k], image->width, image->height); /* for the record; the crops used the whole box */
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
        for (int i = 0; i < FACE_COLUMNS; i++) fputc(sep, f);
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
    emote_face *faces;    /* malloc'd, largest first */
    float *rows;          /* malloc'd: FACE_FRAMINGS preprocessed crops per face, until batched */
    encoded_crop *crops;  /* --save-crops: faces_limit() of them, malloc'd */
} face_slot;

int faces_threads(const engine_options *o) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return o->threads > 0 ? o->threads : cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus;
}

/* Inputs are prepared a group at a time, one per thread: decoding a photo and finding its
 * faces is most of the work. Each slot gets rows for the faces found, no more. */
typedef struct {
    engine *e;
    face_slot *slots;
} face_group;

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
        n = faces_prepare(&g->e->faces, o, g->e->model, s->path, &image, &s->rows, &s->faces, s->crops, &err);
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
        else if (no_face) r.error = NO_FACE_MESSAGE;
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
    free(s->rows);
    return failed;
}

/* --save-crops, in input order: a crop that cannot be saved fails its input. */
static void save_slot_crops(const engine_options *o, face_slot *s) {
    if (!s->crops) return;
    if (s->ok && s->num_faces > 0 && !save_crops(o->faces.save_crops, s->path, s->crops, s->num_faces, s->error, sizeof s->error)) {
        s->ok = false;
        s->num_faces = 0;
        free(s->faces);
        s->faces = NULL;
    }
    for (int k = 0; k < faces_limit(&o->faces); k++) free(s->crops[k].png);
    free(s->crops);
    s->crops = NULL;
}

static bool next_unskipped(input_source *src, skip_fn skip, void *skip_user, input_item *item) {
    do {
        if (!input_source_next(src, item)) return false;
    } while (!item->error && skip && skip(skip_user, item->path));
    return true;
}

/* Room for `rows` rows in *inputs and their probabilities in *probs, grown by doubling as
 * faces are found; false when out of memory (the buffers are kept). */
static bool reserve_rows(float **inputs, float **probs, int *capacity, int rows, size_t row_floats, int classes) {
    if (rows <= *capacity) return true;
    int grown = *capacity > 0 ? *capacity : 1;
    while (grown < rows) grown = grown > INT_MAX / 2 ? rows : grown * 2;
    float *more_inputs = realloc_array(*inputs, (size_t)grown, row_floats * sizeof(float));
    if (more_inputs) *inputs = more_inputs;
    float *more_probs = more_inputs ? realloc_array(*probs, (size_t)grown, (size_t)classes * sizeof(float)) : NULL;
    if (more_probs) *probs = more_probs;
    if (!more_probs) return false;
    *capacity = grown;
    return true;
}

/* Moves slot s's rows to the end of the batch's; an input whose rows do not fit fails. */
static void append_rows(face_slot *s, float **inputs, float **probs, int *capacity, int *rows, size_t row_floats,
                        int classes) {
    int count = s->num_faces * FACE_FRAMINGS;
    s->row = *rows;
    if (!reserve_rows(inputs, probs, capacity, *rows + count, row_floats, classes)) {
        snprintf(s->error, sizeof s->error, "%s: out of memory for %d faces", s->path, s->num_faces);
        s->ok = false;
        s->num_faces = 0;
    } else if (count > 0) {
        memcpy(*inputs + (size_t)*rows * row_floats, s->rows, (size_t)count * row_floats * sizeof(float));
        *rows += count;
    }
    free(s->rows);
    s->rows = NULL;
}

/* emote_classify (emote_features for adapt) over any number of rows, in passes of the
 * session's max_batch, into rows of `width` floats; NULL, or why not. */
static const char *classify_rows(const engine *e, const float *inputs, int rows, size_t row_floats, float *out,
                                 int width, emote_error *err) {
    const int pass = emote_session_max_batch(e->session);
    for (int first = 0; first < rows; first += pass) {
        const float *in = inputs + (size_t)first * row_floats;
        float *dst = out + (size_t)first * width;
        int n = rows - first < pass ? rows - first : pass;
        if (e->features ? emote_features(e->session, in, n, dst, err) : emote_classify(e->session, in, n, dst, err))
            return err->message;
    }
    return NULL;
}

/* --faces has its own loop (emote_pipeline_run's inputs give one result each): inputs are
 * decoded and searched -j at a time, each on a thread, then the faces of up to -b images
 * (until they make -b crops) are classified, in passes of -b crops: the buffers grow with
 * the faces found, never to --max-faces for every image; fewer images when paths on stdin
 * are slow to come (streaming). */
run_counts classify_faces(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                          void *user) {
    const engine_options *o = e->options;
    run_counts counts = {0, 0};
    const int workers = faces_threads(o);
    const int classes = output_width(e);
    const size_t row_floats = emote_input_floats(e->model);
    face_slot *slots = calloc_array((size_t)o->batch + workers, sizeof *slots);
    float *inputs = NULL, *probs = NULL;
    int capacity = 0;
    thread_pool *pool = workers > 1 ? pool_new(workers) : NULL;
    bool more = slots && (workers == 1 || pool), go_on = true;
    if (!more) {
        fprintf(stderr, "emote: out of memory\n");
        counts.failed = 1;
    }
    while (more && go_on) {
        int used = 0, rows = 0;
        input_item item;
        while (used < o->batch && rows < o->batch && more && (used == 0 || !input_source_would_wait(src))) {
            face_group g = {e, slots + used};
            int size = 0;
            while (size < workers && (size == 0 || !input_source_would_wait(src)) &&
                   (more = next_unskipped(src, skip, skip_user, &item))) {
                g.slots[size] = (face_slot){.path = str_dup(item.path)};
                if (o->faces.save_crops && !(g.slots[size].crops = calloc_array((size_t)faces_limit(&o->faces), sizeof(encoded_crop))))
                    snprintf(g.slots[size].error, sizeof g.slots[size].error, "out of memory");
                if (item.error) snprintf(g.slots[size].error, sizeof g.slots[size].error, "%s", item.error);
                size++;
            }
            pool_run(pool, prepare, &g, size);
            for (int i = 0; i < size; i++, used++) { /* the rows in input order */
                save_slot_crops(o, &slots[used]);
                append_rows(&slots[used], &inputs, &probs, &capacity, &rows, row_floats, classes);
            }
        }
        emote_error err;
        const char *batch_error = classify_rows(e, inputs, rows, row_floats, probs, classes, &err);
        for (int i = 0; i < used; i++) {
            counts.done++;
            if (report(e, &slots[i], probs, batch_error, on_result, user, &go_on)) counts.failed++;
        }
    }
    pool_free(pool);
    free(slots);
    free(inputs);
    free(probs);
    return counts;
}
