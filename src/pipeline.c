/* The reading pipeline: inputs flow through a ring of slots, numbered in input order.
 *
 *   caller's thread: takes paths from the input function into free slots (QUEUED) while
 *                    there is room (and, when the input function would wait, not before
 *                    the inputs already taken are handed out: results stream),
 *                    waits for the oldest slots to be READY, copies their rows (one tensor
 *                    per image, or EMOTE_FACE_FRAMINGS per face with a detector) into one
 *                    batch of at most `batch` images and about `batch` rows, runs the forward
 *                    pass, hands out the results in order and frees the slots;
 *   reader threads:  take the oldest QUEUED slot, read + decode (within the memory budget) +
 *                    detect and crop faces + preprocess it into the slot's own rows
 *                    (READING), mark it READY.
 *
 * Invariant: slots with sequence numbers in [head, tail) are in use, tail - head <= capacity;
 * readers only touch slots in [next_read, tail) after claiming them under the lock, and the
 * caller fills slot `tail` before publishing it by advancing tail under the lock. Bytes of
 * images being read (memory_in_use) stay within the budget, or belong to one image alone. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emote.h"
#include "faces/face_crops.h"
#include "image/image_internal.h"
#include "util.h"

#define DEFAULT_DEPTH 4
#define MAX_READERS 256

typedef enum { SLOT_QUEUED, SLOT_READING, SLOT_READY } slot_state;

typedef struct {
    char *path;
    char error[EMOTE_ERROR_MAX];
    bool ok; /* READY and its rows are preprocessed */
    int width, height; /* the image's size as its file states it (emote_result) */
    slot_state state;
    float *input;       /* without a detector: the image's one preprocessed tensor */
    image_faces faces;  /* with a detector: its faces and their crops' tensors */
    int first_row;      /* where its rows start in the batch */
} slot;

typedef struct {
    const emote_model *model;
    emote_session *session;
    const emote_pipeline_options *options;
    face_stage stage; /* stage.detector NULL: whole images */
    emote_decode_options decode;
    size_t input_floats;
    int classes, capacity;
    int feature_size; /* options->features: floats of one image's features, else 0 */
    int width;        /* floats of one result: classes, or features (twice with TTA) */
    slot *slots;
    long head, tail, next_read; /* sequence numbers; slot of n is slots[n % capacity] */
    bool stopping;
    size_t memory_budget, memory_in_use;
    pthread_mutex_t lock;
    pthread_cond_t queued, ready, memory_freed;
    int row_capacity; /* rows the batch buffers hold; they grow with the faces found */
    float *inputs, *probs, *mirrored; /* one batch; probs holds results of `width` floats */
} pipeline;

static slot *slot_at(pipeline *p, long n) { return &p->slots[n % p->capacity]; }

/* ---- reading, within the memory budget ------------------------------------------ */

/* The bytes an image holds while it is read: its file, its decoded pixels (at most 4
 * channels) and the largest float copy made of it: the detector's input (3 channels, at
 * most detect_size on the longer side) or the whole image preprocessed. */
static size_t bytes_to_read(const pipeline *p, size_t file_bytes, uint64_t w, uint64_t h) {
    uint64_t floats = w * h * (uint64_t)emote_model_input(p->model)->channels;
    if (p->stage.detector) {
        uint64_t longer = w > h ? w : h, side = (uint64_t)p->stage.detect.detect_size;
        double shrink = side > 0 && longer > side ? (double)side / (double)longer : 1.0;
        floats = (uint64_t)(3.0 * (double)(w * h) * shrink * shrink);
    }
    return file_bytes + (size_t)(4 * w * h + 4 * floats);
}

/* Waits until `bytes` fit in the budget, or nothing else is held, and takes them. */
static void take_memory(pipeline *p, size_t bytes) {
    pthread_mutex_lock(&p->lock);
    while (p->memory_in_use > 0 && p->memory_in_use + bytes > p->memory_budget)
        pthread_cond_wait(&p->memory_freed, &p->lock);
    p->memory_in_use += bytes;
    pthread_mutex_unlock(&p->lock);
}

static void give_back_memory(pipeline *p, size_t bytes) {
    if (bytes == 0) return;
    pthread_mutex_lock(&p->lock);
    p->memory_in_use -= bytes;
    pthread_cond_broadcast(&p->memory_freed);
    pthread_mutex_unlock(&p->lock);
}

static emote_status read_bytes(const pipeline *p, const char *path, unsigned char **data, size_t *size,
                               emote_error *err) {
    if (p->options->dash_is_stdin_image && strcmp(path, "-") == 0)
        return read_stream_all(stdin, "<stdin>", EMOTE_MAX_FILE_BYTES, data, size, err);
    return read_file_all(path, EMOTE_MAX_FILE_BYTES, data, size, err);
}

/* Reads and decodes path, first taking from the budget what the image will hold while it
 * is read (*held: to give back once the slot is read). */
static emote_status load_image(pipeline *p, const char *path, emote_image *image, size_t *held, emote_error *err) {
    unsigned char *data;
    size_t size;
    emote_status s = read_bytes(p, path, &data, &size, err);
    if (s) return s;
    uint64_t w = 0, h = 0;
    if (!image_decoded_size(data, size, &p->decode, &w, &h)) w = h = 0; /* decoding will say why */
    *held = bytes_to_read(p, size, w, h);
    take_memory(p, *held);
    const char *name = strcmp(path, "-") == 0 && p->options->dash_is_stdin_image ? "<stdin>" : path;
    s = emote_image_decode_with(data, size, name, &p->decode, image, err);
    free(data);
    return s;
}

/* Reads, decodes and preprocesses one slot; touches nothing shared but the budget. */
static void read_slot(pipeline *p, slot *s) {
    emote_image image = {0};
    emote_error err;
    size_t held = 0;
    emote_status st = load_image(p, s->path, &image, &held, &err);
    if (!st && p->stage.detector) st = find_face_crops(&p->stage, p->model, s->path, &image, &s->faces, &err);
    else if (!st) st = emote_preprocess(emote_model_input(p->model), &image, s->input, &err);
    if (st) snprintf(s->error, sizeof s->error, "%s", err.message);
    s->ok = st == EMOTE_OK;
    s->width = image.source_width;
    s->height = image.source_height;
    emote_image_free(&image);
    give_back_memory(p, held);
}

static void *reader_main(void *arg) {
    pipeline *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->next_read < p->tail && slot_at(p, p->next_read)->state != SLOT_QUEUED) p->next_read++;
        if (p->stopping) break;
        if (p->next_read == p->tail) {
            pthread_cond_wait(&p->queued, &p->lock);
            continue;
        }
        slot *s = slot_at(p, p->next_read++);
        s->state = SLOT_READING;
        pthread_mutex_unlock(&p->lock);
        read_slot(p, s);
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_READY;
        pthread_cond_broadcast(&p->ready);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Queues the next input into slot `tail`; false once the input function has no more. */
static bool take_input(pipeline *p, emote_input_fn next, void *user) {
    const char *path = NULL, *error = NULL;
    if (!next(user, &path, &error)) return false;
    slot *s = slot_at(p, p->tail);
    s->ok = false;
    s->width = s->height = 0;
    s->error[0] = '\0';
    s->path = str_dup(path ? path : "?");
    s->state = SLOT_QUEUED;
    if (!s->path || error) {
        snprintf(s->error, sizeof s->error, "%s", s->path ? error : "out of memory");
        s->state = SLOT_READY;
    }
    pthread_mutex_lock(&p->lock);
    p->tail++;
    pthread_cond_signal(&p->queued);
    pthread_mutex_unlock(&p->lock);
    return true;
}

/* Whether to take another input before running a batch: while there is room, unless the
 * input function would wait while inputs already taken could be handed out (streaming). */
static bool should_take_input(const pipeline *p, void *user) {
    long in_flight = p->tail - p->head;
    if (in_flight >= p->capacity) return false;
    return in_flight == 0 || !p->options->input_would_wait || !p->options->input_would_wait(user);
}

/* ---- the batch ---------------------------------------------------------------------- */

/* Waits until slot s is READY; without readers, reads it here. */
static void wait_ready(pipeline *p, slot *s) {
    if (p->options->readers == 0) {
        if (s->state == SLOT_QUEUED) read_slot(p, s);
        s->state = SLOT_READY;
        return;
    }
    pthread_mutex_lock(&p->lock);
    while (s->state != SLOT_READY) pthread_cond_wait(&p->ready, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

/* The preprocessed rows slot s brings to the batch (*rows: the first); 0 when it failed or
 * has no face. */
static int slot_rows(const pipeline *p, const slot *s, const float **rows) {
    if (!s->ok) return 0;
    *rows = p->stage.detector ? s->faces.rows : s->input;
    return p->stage.detector ? s->faces.count * EMOTE_FACE_FRAMINGS : 1;
}

/* Room for `rows` rows in the batch buffers, grown by doubling; false when out of memory
 * (the buffers are kept). */
static bool reserve_rows(pipeline *p, int rows) {
    if (rows <= p->row_capacity) return true;
    int grown = p->row_capacity > 0 ? p->row_capacity : rows;
    while (grown < rows) grown = grown > (1 << 29) ? rows : grown * 2;
    int mirrored_width = p->feature_size ? p->feature_size : p->classes;
    float *more;
    if (!(more = realloc_array(p->inputs, (size_t)grown, p->input_floats * sizeof(float)))) return false;
    p->inputs = more;
    if (!(more = realloc_array(p->probs, (size_t)grown, (size_t)p->width * sizeof(float)))) return false;
    p->probs = more;
    if (!(more = realloc_array(p->mirrored, (size_t)grown, (size_t)mirrored_width * sizeof(float)))) return false;
    p->mirrored = more;
    p->row_capacity = grown;
    return true;
}

/* Copies the rows of the slots from head on into the batch, until `limit` slots are taken
 * or their rows make a batch; returns the slots taken and sets *rows. A slot whose rows do
 * not fit in memory fails. */
static int gather_batch(pipeline *p, int limit, int *rows) {
    int taken = 0;
    *rows = 0;
    while (taken < limit && *rows < p->options->batch) {
        slot *s = slot_at(p, p->head + taken++);
        wait_ready(p, s);
        const float *from = NULL;
        int n = slot_rows(p, s, &from);
        if (n > 0 && !reserve_rows(p, *rows + n)) {
            format_message(s->error, sizeof s->error, "%s: out of memory for %d faces", s->path, s->faces.count);
            s->ok = false;
            n = 0;
        }
        if (n > 0) memcpy(p->inputs + (size_t)*rows * p->input_floats, from, (size_t)n * p->input_floats * sizeof(float));
        s->first_row = *rows;
        *rows += n;
        free(s->faces.rows); /* copied: only the faces (and crops) are needed now */
        s->faces.rows = NULL;
    }
    return taken;
}

static void mirror_inputs(const emote_input_spec *in, float *inputs, int rows) {
    size_t lines = (size_t)rows * in->channels * in->height;
    for (size_t l = 0; l < lines; l++) {
        float *line = inputs + l * in->width;
        for (int a = 0, b = in->width - 1; a < b; a++, b--) {
            float t = line[a];
            line[a] = line[b];
            line[b] = t;
        }
    }
}

/* Probabilities (or features) of `rows` tensors in p->inputs into out, in passes of the
 * session's max_batch (face batches can be larger). */
static bool run_model(pipeline *p, int rows, float *out, char *error) {
    const int pass = emote_session_max_batch(p->session);
    const size_t out_width = (size_t)(p->feature_size ? p->feature_size : p->classes);
    for (int first = 0; first < rows; first += pass) {
        const float *in = p->inputs + (size_t)first * p->input_floats;
        int n = rows - first < pass ? rows - first : pass;
        emote_error err;
        emote_status s = p->feature_size ? emote_features(p->session, in, n, out + first * out_width, &err)
                                         : emote_classify(p->session, in, n, out + first * out_width, &err);
        if (s) {
            snprintf(error, EMOTE_ERROR_MAX, "%s", err.message);
            return false;
        }
    }
    return true;
}

/* Features with TTA: each result holds the image's features, then its mirror image's. */
static bool features_with_mirror(pipeline *p, int rows, char *error) {
    size_t f = (size_t)p->feature_size;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) mirror_inputs(emote_model_input(p->model), p->inputs, rows);
        if (!run_model(p, rows, p->mirrored, error)) return false;
        for (int i = 0; i < rows; i++)
            memcpy(p->probs + (size_t)i * 2 * f + pass * f, p->mirrored + (size_t)i * f, f * sizeof(float));
    }
    return true;
}

/* The forward pass over `rows` tensors in p->inputs (twice with TTA). */
static bool forward(pipeline *p, int rows, char *error) {
    if (rows == 0) return true;
    if (p->feature_size && p->options->tta) return features_with_mirror(p, rows, error);
    if (!run_model(p, rows, p->probs, error)) return false;
    if (p->options->tta && !p->feature_size) {
        mirror_inputs(emote_model_input(p->model), p->inputs, rows);
        if (!run_model(p, rows, p->mirrored, error)) return false;
        for (size_t i = 0; i < (size_t)rows * p->classes; i++) p->probs[i] = (p->probs[i] + p->mirrored[i]) / 2;
    }
    return true;
}

/* ---- results ------------------------------------------------------------------------ */

typedef struct {
    emote_result_fn on_result;
    void *user;
    emote_pipeline_counts *counts;
    bool go_on;
} delivery;

/* Hands out r with `out` (p->width floats: probabilities or features) unless it has an error. */
static void deliver(pipeline *p, slot *s, emote_result *r, const float *out, delivery *d) {
    if (!r->error && !all_finite(out, (size_t)p->width)) {
        format_message(s->error, sizeof s->error, "%s: model output is not finite", r->path);
        r->error = s->error;
    } else if (!r->error) {
        *(p->feature_size ? &r->features : &r->probs) = out;
    }
    d->counts->done++;
    d->counts->failed += r->error != NULL;
    if (d->go_on) d->go_on = d->on_result(d->user, r) != 0;
}

/* Slot s's results: one for the image, or with a detector one per face (one "no face
 * found" when it has none). */
static void hand_out(pipeline *p, slot *s, const char *batch_error, delivery *d) {
    emote_result r = {.path = s->path ? s->path : "?", .width = s->width, .height = s->height};
    r.error = !s->ok ? s->error : batch_error;
    if (!p->stage.detector) {
        deliver(p, s, &r, p->probs + (size_t)s->first_row * p->width, d);
        return;
    }
    const image_faces *f = &s->faces;
    r.faces = f->faces;
    r.face_count = f->count;
    r.faces_found = f->found;
    r.crops = f->crops;
    if (s->ok && f->count == 0) {
        r.no_face = 1;
        r.error = EMOTE_NO_FACE_MESSAGE;
    }
    for (int k = 0; k < (f->count > 0 ? f->count : 1); k++) {
        emote_result face = r;
        face.face_index = k;
        face.face = f->count > 0 ? &f->faces[k] : NULL;
        float *rows = p->probs + (size_t)(s->first_row + k * EMOTE_FACE_FRAMINGS) * p->width;
        deliver(p, s, &face, face.error ? NULL : average_framings(rows, p->width), d);
    }
}

/* Classifies the slots from head on, at most `limit` of them (gather_batch), and hands out
 * their results. */
static void run_batch(pipeline *p, int limit, delivery *d) {
    int rows;
    int n = gather_batch(p, limit, &rows);
    char batch_error[EMOTE_ERROR_MAX];
    bool batch_ok = forward(p, rows, batch_error);
    for (int i = 0; i < n; i++) {
        slot *s = slot_at(p, p->head + i);
        hand_out(p, s, batch_ok ? NULL : batch_error, d);
        free(s->path);
        s->path = NULL;
        image_faces_free(&s->faces);
    }
    pthread_mutex_lock(&p->lock);
    p->head += n;
    pthread_mutex_unlock(&p->lock);
}

static void pipeline_free(pipeline *p) {
    for (int i = 0; p->slots && i < p->capacity; i++) {
        free(p->slots[i].path);
        free(p->slots[i].input);
        image_faces_free(&p->slots[i].faces);
    }
    free(p->slots);
    free(p->inputs);
    free(p->probs);
    free(p->mirrored);
}

/* The contract of emote_pipeline_run (include/emote.h). */
static emote_status check_arguments(const emote_model *model, const emote_session *session,
                                    const emote_pipeline_options *o, emote_input_fn next, emote_result_fn on_result,
                                    emote_error *err) {
    if (!model || !session || !o || !next || !on_result)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: no %s (NULL)",
                          !model ? "model" : !session ? "session" : !o ? "options" : !next ? "input function" : "result function");
    if (emote_session_model(session) != model)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: the session was made for %s, not for %s",
                          emote_model_name(emote_session_model(session)), emote_model_name(model));
    if (o->batch > emote_session_max_batch(session))
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: batch %d is larger than the session's %d", o->batch,
                          emote_session_max_batch(session));
    if (o->detector && emote_model_num_outputs(o->detector) == 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: %s is not a face detector", emote_model_name(o->detector));
    return EMOTE_OK;
}

static emote_status pipeline_init(pipeline *p, const emote_pipeline_options *o, emote_error *err) {
    int depth = o->depth > 0 ? o->depth : DEFAULT_DEPTH;
    if (o->batch < 1 || o->readers < 0 || o->readers > MAX_READERS || depth > 1024 || o->batch > 65536)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: batch %d, readers %d (0..%d) or depth %d out of range",
                          o->batch, o->readers, MAX_READERS, depth);
    p->memory_budget = o->memory_budget ? o->memory_budget : EMOTE_PIPELINE_MEMORY_BUDGET;
    p->decode = o->decode;
    if (o->detector) {
        emote_detect_options defaults = EMOTE_DETECT_DEFAULTS;
        p->stage = (face_stage){o->detector, o->detect ? *o->detect : defaults, o->main_face_only, o->keep_crops};
        p->decode.min_width = p->decode.min_height = 0; /* boxes in source pixels, crops at full resolution */
    }
    p->input_floats = emote_input_floats(p->model);
    p->classes = emote_model_num_classes(p->model);
    p->feature_size = o->features ? emote_model_feature_size(p->model) : 0;
    if (o->features && p->feature_size == 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT,
                          "%s has no final dense layer (its graph does not end with linear + softmax)",
                          emote_model_name(p->model));
    p->width = p->feature_size ? p->feature_size * (o->tta ? 2 : 1) : p->classes;
    p->capacity = o->readers == 0 ? o->batch : o->batch * depth;
    p->slots = calloc_array((size_t)p->capacity, sizeof(slot));
    bool ok = p->slots && reserve_rows(p, o->batch);
    for (int i = 0; ok && !o->detector && i < p->capacity; i++)
        ok = (p->slots[i].input = alloc_array(p->input_floats, sizeof(float)));
    if (!ok) {
        pipeline_free(p);
        return emote_fail(err, EMOTE_ERR_MEMORY, "pipeline: out of memory for %d queued images", p->capacity);
    }
    return EMOTE_OK;
}

static void stop_readers(pipeline *p, pthread_t *threads, int started) {
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->queued);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
}

emote_status emote_pipeline_run(const emote_model *model, emote_session *session,
                                const emote_pipeline_options *options, emote_input_fn next,
                                emote_result_fn on_result, void *user, emote_pipeline_counts *counts,
                                emote_error *err) {
    pipeline p = {.model = model, .session = session, .options = options};
    emote_pipeline_counts local = {0, 0};
    if (!counts) counts = &local;
    *counts = local;
    emote_status status = check_arguments(model, session, options, next, on_result, err);
    if (!status) status = pipeline_init(&p, options, err);
    if (status) return status;
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.queued, NULL);
    pthread_cond_init(&p.ready, NULL);
    pthread_cond_init(&p.memory_freed, NULL);
    pthread_t threads[MAX_READERS];
    int started = 0;
    while (started < options->readers && pthread_create(&threads[started], NULL, reader_main, &p) == 0) started++;
    if (started < options->readers) {
        status = emote_fail(err, EMOTE_ERR_MEMORY, "pipeline: cannot start %d reader threads", options->readers);
    } else {
        delivery d = {on_result, user, counts, true};
        bool more = true;
        while (d.go_on) {
            if (more && should_take_input(&p, user)) {
                more = take_input(&p, next, user);
                continue;
            }
            int n = (int)(p.tail - p.head < options->batch ? p.tail - p.head : options->batch);
            if (n == 0) break;
            run_batch(&p, n, &d);
        }
    }
    stop_readers(&p, threads, started);
    pthread_cond_destroy(&p.memory_freed);
    pthread_cond_destroy(&p.ready);
    pthread_cond_destroy(&p.queued);
    pthread_mutex_destroy(&p.lock);
    pipeline_free(&p);
    return status;
}
