/* The reading pipeline: inputs flow through a ring of slots, numbered in input order.
 *
 *   caller's thread: takes paths from the input function into free slots (QUEUED) while
 *                    there is room (and, when the input function would wait, not before
 *                    the inputs already taken are handed out: results stream),
 *                    waits until the oldest `batch` slots are READY, copies their tensors
 *                    into one batch, runs the forward pass, hands out the results in order
 *                    and frees the slots;
 *   reader threads:  take the oldest QUEUED slot, read + decode + preprocess it into the
 *                    slot's own tensor (READING), mark it READY.
 *
 * Invariant: slots with sequence numbers in [head, tail) are in use, tail - head <= capacity;
 * readers only touch slots in [next_read, tail) after claiming them under the lock, and the
 * caller fills slot `tail` before publishing it by advancing tail under the lock. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emote.h"
#include "util.h"

#define DEFAULT_DEPTH 4
#define MAX_READERS 256

typedef enum { SLOT_QUEUED, SLOT_READING, SLOT_READY } slot_state;

typedef struct {
    char *path;
    char error[EMOTE_ERROR_MAX];
    bool ok; /* READY and input holds the preprocessed tensor */
    int width, height; /* the image's size as its file states it (emote_result) */
    slot_state state;
    float *input;
} slot;

typedef struct {
    const emote_model *model;
    emote_session *session;
    const emote_pipeline_options *options;
    size_t input_floats;
    int classes, capacity;
    int feature_size; /* options->features: floats of one image's features, else 0 */
    int width;        /* floats of one result: classes, or features (twice with TTA) */
    slot *slots;
    long head, tail, next_read; /* sequence numbers; slot of n is slots[n % capacity] */
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t queued, ready;
    float *inputs, *probs, *mirrored; /* one batch; probs holds results of `width` floats */
} pipeline;

static slot *slot_at(pipeline *p, long n) { return &p->slots[n % p->capacity]; }

static emote_status load_image(const pipeline *p, const char *path, emote_image *image, emote_error *err) {
    if (p->options->dash_is_stdin_image && strcmp(path, "-") == 0) {
        unsigned char *data;
        size_t size;
        emote_status s = read_stream_all(stdin, "<stdin>", EMOTE_MAX_FILE_BYTES, &data, &size, err);
        if (s) return s;
        s = emote_image_decode_with(data, size, "<stdin>", &p->options->decode, image, err);
        free(data);
        return s;
    }
    return emote_image_load_with(path, &p->options->decode, image, err);
}

/* Reads, decodes and preprocesses one slot; touches nothing shared. */
static void read_slot(const pipeline *p, slot *s) {
    emote_image image = {0};
    emote_error err;
    if (load_image(p, s->path, &image, &err) || emote_preprocess(emote_model_input(p->model), &image, s->input, &err))
        snprintf(s->error, sizeof s->error, "%s", err.message);
    else
        s->ok = true;
    s->width = image.source_width;
    s->height = image.source_height;
    emote_image_free(&image);
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

/* Waits until slots [head, head + n) are READY; without readers, reads them here. */
static void wait_ready(pipeline *p, int n) {
    if (p->options->readers == 0) {
        for (int i = 0; i < n; i++) {
            slot *s = slot_at(p, p->head + i);
            if (s->state == SLOT_QUEUED) read_slot(p, s);
            s->state = SLOT_READY;
        }
        p->next_read = p->head + n;
        return;
    }
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < n; i++)
        while (slot_at(p, p->head + i)->state != SLOT_READY) pthread_cond_wait(&p->ready, &p->lock);
    pthread_mutex_unlock(&p->lock);
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

/* Probabilities (or features) of `rows` tensors in p->inputs into out. */
static bool run_model(pipeline *p, int rows, float *out, char *error) {
    emote_error err;
    emote_status s = p->feature_size ? emote_features(p->session, p->inputs, rows, out, &err)
                                     : emote_classify(p->session, p->inputs, rows, out, &err);
    if (s) snprintf(error, EMOTE_ERROR_MAX, "%s", err.message);
    return s == EMOTE_OK;
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

static bool all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

/* Classifies slots [head, head + n) and hands out their results; false to stop. */
static bool run_batch(pipeline *p, int n, emote_result_fn on_result, void *user, emote_pipeline_counts *counts) {
    int rows = 0;
    for (int i = 0; i < n; i++) {
        slot *s = slot_at(p, p->head + i);
        if (s->ok) memcpy(p->inputs + (size_t)rows++ * p->input_floats, s->input, p->input_floats * sizeof(float));
    }
    char batch_error[EMOTE_ERROR_MAX];
    bool batch_ok = forward(p, rows, batch_error);
    bool go_on = true;
    rows = 0;
    for (int i = 0; i < n; i++) {
        slot *s = slot_at(p, p->head + i);
        emote_result r = {s->path ? s->path : "?", NULL, NULL, s->width, s->height, NULL};
        const float *out = s->ok && batch_ok ? p->probs + (size_t)rows * p->width : NULL;
        if (!s->ok) r.error = s->error;
        else if (!batch_ok) r.error = batch_error;
        rows += s->ok;
        if (out && !all_finite(out, p->width)) {
            format_message(s->error, sizeof s->error, "%s: model output is not finite", r.path);
            r.error = s->error;
        } else if (out && p->feature_size) {
            r.features = out;
        } else {
            r.probs = out;
        }
        counts->done++;
        counts->failed += r.error != NULL;
        if (go_on) go_on = on_result(user, &r) != 0;
        free(s->path);
        s->path = NULL;
    }
    pthread_mutex_lock(&p->lock);
    p->head += n;
    pthread_mutex_unlock(&p->lock);
    return go_on;
}

static void pipeline_free(pipeline *p) {
    for (int i = 0; p->slots && i < p->capacity; i++) {
        free(p->slots[i].path);
        free(p->slots[i].input);
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
    return EMOTE_OK;
}

static emote_status pipeline_init(pipeline *p, const emote_pipeline_options *o, emote_error *err) {
    int depth = o->depth > 0 ? o->depth : DEFAULT_DEPTH;
    if (o->batch < 1 || o->readers < 0 || o->readers > MAX_READERS || depth > 1024 || o->batch > 65536)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "pipeline: batch %d, readers %d (0..%d) or depth %d out of range",
                          o->batch, o->readers, MAX_READERS, depth);
    p->input_floats = emote_input_floats(p->model);
    p->classes = emote_model_num_classes(p->model);
    p->feature_size = o->features ? emote_model_feature_size(p->model) : 0;
    if (o->features && p->feature_size == 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT,
                          "%s has no final dense layer (its graph does not end with linear + softmax)",
                          emote_model_name(p->model));
    p->width = p->feature_size ? p->feature_size * (o->tta ? 2 : 1) : p->classes;
    int mirrored_width = p->feature_size ? p->feature_size : p->classes;
    p->capacity = o->readers == 0 ? o->batch : o->batch * depth;
    p->slots = calloc_array((size_t)p->capacity, sizeof(slot));
    p->inputs = alloc_array(p->input_floats, (size_t)o->batch * sizeof(float));
    p->probs = alloc_array((size_t)p->width, (size_t)o->batch * sizeof(float));
    p->mirrored = alloc_array((size_t)mirrored_width, (size_t)o->batch * sizeof(float));
    bool ok = p->slots && p->inputs && p->probs && p->mirrored;
    for (int i = 0; ok && i < p->capacity; i++) ok = (p->slots[i].input = alloc_array(p->input_floats, sizeof(float)));
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
    pthread_t threads[MAX_READERS];
    int started = 0;
    while (started < options->readers && pthread_create(&threads[started], NULL, reader_main, &p) == 0) started++;
    if (started < options->readers) {
        status = emote_fail(err, EMOTE_ERR_MEMORY, "pipeline: cannot start %d reader threads", options->readers);
    } else {
        bool more = true, go_on = true;
        while (go_on) {
            if (more && should_take_input(&p, user)) {
                more = take_input(&p, next, user);
                continue;
            }
            int n = (int)(p.tail - p.head < options->batch ? p.tail - p.head : options->batch);
            if (n == 0) break;
            wait_ready(&p, n);
            go_on = run_batch(&p, n, on_result, user, counts);
        }
    }
    stop_readers(&p, threads, started);
    pthread_cond_destroy(&p.ready);
    pthread_cond_destroy(&p.queued);
    pthread_mutex_destroy(&p.lock);
    pipeline_free(&p);
    return status;
}
