/* Conv weights derived from the file's for the fast paths (Winograd-transformed, packed for
 * packed_gemm.c), made when a session is created rather than when a model opens: `emote info`
 * and model checks never pay for them. A session starts them on a thread of their own and its
 * first batch waits for them, so that in a one-image process they are made while the image
 * is read and its faces found (model_start_convs, model_wait_convs). They live in one mapping
 * with transparent huge pages advised: 12 MB for the default model is then a few page faults
 * instead of 3,000 (each costs microseconds on a VM). They take at most what is left of the weight budget of the model's
 * load (twice the file's size and 64 MiB, less what the load took): convs may share one
 * tensor thousands of times; those past it run on OpenBLAS. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "graph.h"
#include "layers/layers.h"
#include "util.h"


static pthread_mutex_t prepare_lock = PTHREAD_MUTEX_INITIALIZER;

/* EMOTE_CONV=im2col: every conv as im2col + OpenBLAS GEMM, to compare the fast paths with. */
static bool im2col_only(void) {
    const char *v = getenv("EMOTE_CONV");
    return v && strcmp(v, "im2col") == 0;
}

static size_t derived_floats(const conv_layer *c) {
    size_t f = conv_wants_winograd(c)  ? winograd_weight_floats(c)
               : conv_wants_packed(c) ? packed_weight_floats(c->cout, c->cin * c->kh * c->kw)
                                      : 0;
    return whole_lines(f); /* each array starts on a cache line */
}

typedef struct {
    conv_layer *conv;
    size_t offset; /* in floats, of its derived weights in the mapping */
    float *at;
} derive_job;

typedef struct {
    derive_job *jobs;
    int count, capacity;
    size_t floats;
} derive_list;

/* Counts c's derived floats and, where there is room, lists it; none past `limit` floats. */
static void add(conv_layer *c, derive_list *l, size_t limit) {
    const size_t floats = derived_floats(c);
    if (!floats || floats > limit - l->floats) return;
    if (l->jobs && l->count < l->capacity) l->jobs[l->count] = (derive_job){c, l->floats, NULL};
    l->count++;
    l->floats += floats;
}

static void each_conv(emote_model *m, derive_list *l) {
    l->count = 0;
    l->floats = 0;
    for (int i = 0; i < m->num_ops; i++) {
        graph_op *op = &m->ops[i];
        if (op->kind == OP_CONV2D) add(&op->u.conv, l, m->derived_floats_max);
        if (op->kind != OP_RESIDUAL) continue;
        for (int b = 0; b < op->u.residual.num_body; b++) add(&op->u.residual.body[b], l, m->derived_floats_max);
        if (op->u.residual.shortcut) add(op->u.residual.shortcut, l, m->derived_floats_max);
    }
}

static void derive(const derive_job *j) {
    const conv_layer *c = j->conv;
    if (conv_wants_winograd(c)) winograd_transform_weights(c, j->at);
    else pack_weights(c->weight, c->cout, c->cin * c->kh * c->kw, j->at);
}

typedef struct {
    const derive_job *first, *end;
} derive_share;

static void *derive_share_run(void *arg) {
    const derive_share *sh = arg;
    for (const derive_job *j = sh->first; j < sh->end; j++) derive(j);
    return NULL;
}

/* Derives the list, the later half (by floats) on a second thread where one starts: packing
 * and the first touch of fresh pages are most of a one-image process's start. */
static void derive_all(const derive_list *l) {
    int split = 0;
    for (size_t done = 0; split < l->count && done < l->floats / 2; split++) done += derived_floats(l->jobs[split].conv);
    derive_share later = {l->jobs + split, l->jobs + l->count}, sooner = {l->jobs, l->jobs + split};
    pthread_t helper;
    const bool helped = split < l->count && sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
                        pthread_create(&helper, NULL, derive_share_run, &later) == 0;
    derive_share_run(&sooner);
    if (helped) pthread_join(helper, NULL);
    else derive_share_run(&later);
}

/* A mapping of `bytes` (whole huge pages) that starts on a huge page, or NULL. */
static void *map_huge(size_t bytes) {
    char *map = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)map + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    if (start > map) munmap(map, (size_t)(start - map));
    if (start < map + HUGE_PAGE) munmap(start + bytes, (size_t)(map + HUGE_PAGE - start));
    advise_huge_pages(start, bytes);
    return start;
}

typedef struct conv_weights {
    void *map;
    size_t bytes;
    derive_list list;
    pthread_t thread;
    bool running; /* thread started, not yet joined */
} conv_weights;

static void *derive_in_background(void *arg) {
    derive_all(&((conv_weights *)arg)->list);
    return NULL;
}

/* Joins the deriving thread if one runs; under prepare_lock. */
static void finish(emote_model *m) {
    conv_weights *w = m->conv_weights;
    if (w && w->running) {
        pthread_join(w->thread, NULL);
        w->running = false;
    }
    if (w) {
        free(w->list.jobs);
        w->list.jobs = NULL;
    }
    atomic_store_explicit(&m->conv_weights_ready, true, memory_order_release);
}

emote_status model_start_convs(const emote_model *model, bool background, emote_error *err) {
    emote_model *m = (emote_model *)model; /* what it adds is internal, made once, then read only */
    if (atomic_load_explicit(&m->conv_weights_ready, memory_order_acquire)) return EMOTE_OK;
    emote_status s = EMOTE_OK;
    pthread_mutex_lock(&prepare_lock);
    if (!m->conv_weights && !atomic_load_explicit(&m->conv_weights_ready, memory_order_relaxed)) {
        derive_list l = {0};
        if (!im2col_only()) each_conv(m, &l);
        conv_weights *w = l.count ? calloc(1, sizeof *w) : NULL;
        if (w) {
            w->bytes = (l.floats * sizeof(float) + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
            w->map = map_huge(w->bytes);
            w->list.capacity = l.count;
            w->list.jobs = calloc((size_t)l.count, sizeof *w->list.jobs);
        }
        if (l.count && (!w || !w->map || !w->list.jobs)) {
            if (w && w->map) munmap(w->map, w->bytes);
            if (w) free(w->list.jobs);
            free(w);
            s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", m->name);
        } else if (w) {
            /* Every conv gets its address now (sessions plan their scratch by it), its
             * contents before the first batch. */
            each_conv(m, &w->list);
            for (int i = 0; i < w->list.count; i++) {
                derive_job *j = &w->list.jobs[i];
                j->at = (float *)w->map + j->offset;
                if (conv_wants_winograd(j->conv)) j->conv->winograd_weight = j->at;
                else j->conv->packed_weight = j->at;
            }
            m->conv_weights = w;
            w->running = background && pthread_create(&w->thread, NULL, derive_in_background, w) == 0;
            if (!w->running) {
                derive_all(&w->list);
                finish(m);
            }
        } else {
            finish(m);
        }
    } else if (!background && m->conv_weights) {
        finish(m); /* started in the background by a session: wait for it */
    }
    pthread_mutex_unlock(&prepare_lock);
    return s;
}

void model_wait_convs(const emote_model *model) {
    emote_model *m = (emote_model *)model;
    if (atomic_load_explicit(&m->conv_weights_ready, memory_order_acquire)) return;
    pthread_mutex_lock(&prepare_lock);
    if (m->conv_weights) finish(m);
    pthread_mutex_unlock(&prepare_lock);
}

void model_free_conv_weights(emote_model *m) {
    conv_weights *w = m->conv_weights;
    if (!w) return;
    pthread_mutex_lock(&prepare_lock);
    finish(m);
    pthread_mutex_unlock(&prepare_lock);
    munmap(w->map, w->bytes);
    free(w);
    m->conv_weights = NULL;
}
