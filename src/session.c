/* A session runs batches through a model. Every buffer is planned once, in
 * emote_session_new, from the largest activation and im2col matrix in the graph. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include "graph.h"
#include "layers/layers.h"
#include "thread_pool.h"
#include "util.h"

enum { BUF_MAIN_A, BUF_MAIN_B, BUF_TEMP_A, BUF_TEMP_B, NUM_BUFFERS };
/* The first ops of a CNN make the largest activations (48x48x32 floats: 295 KB an image), too
 * large for a whole batch to stay in cache between one op and the next. The leading ops whose
 * input or output is at least SLICE_MIN_FLOATS an image run SLICE_IMAGES images at a time. */
#define SLICE_IMAGES 2
#define SLICE_MIN_FLOATS 32768
#define MAX_THREADS 256
/* OpenBLAS maps a work buffer of this size (its BUFFER_SIZE, 128 MiB in 0.3.21 on x86-64) for
 * each thread in an sgemm at once, and when the mapping fails it retries forever. The mapping
 * is a little larger (two pages more in 0.3.21): checked with 1 MiB to spare. */
#define BLAS_BUFFER_BYTES ((size_t)128 << 20)
#define BLAS_BUFFER_MAPPED (BLAS_BUFFER_BYTES + ((size_t)1 << 20))

/* One worker's buffers, sized for its share of a batch. */
typedef struct {
    float *buffers[NUM_BUFFERS]; /* activations, CNHW */
    float *col;                  /* im2col matrices */
    float *scratch;              /* squeeze-excitation vectors */
    float *trace_buffer;         /* NCHW copy for the trace callback */
    float *slices[2];            /* activations of SLICE_IMAGES images, CNHW */
} worker;

/* A batch runs in one of two ways. Enough images: each worker takes a share and runs the
 * whole graph on it alone (no synchronisation between layers). Fewer images than threads
 * (one image, or tracing): worker 0 runs the graph and every conv splits across the pool. */
struct emote_session {
    const emote_model *model;
    int max_batch, num_workers, per_worker; /* per_worker: images per worker at most */
    int slice_ops;                          /* leading ops run on slices of a batch */
    worker *workers;
    thread_pool *pool; /* NULL with one thread */
    emote_trace_fn trace;
    void *trace_user;
};

typedef struct {
    size_t activation, col, scratch; /* activation and scratch: floats per image; col: floats */
} buffer_plan;

static void plan_conv(const conv_layer *c, int images, int threads, buffer_plan *plan) {
    size_t col = conv_col_floats(c, images, threads);
    if (col > plan->col) plan->col = col;
    if (shape_size(c->out) > plan->activation) plan->activation = shape_size(c->out);
}

/* Buffers for `images` images at once, convs split across `threads`. */
static buffer_plan plan_buffers(const emote_model *m, int images, int threads) {
    buffer_plan plan = {shape_size((shape3){m->input.channels, m->input.height, m->input.width}), 0, 0};
    for (int i = 0; i < m->num_ops; i++) {
        const graph_op *op = &m->ops[i];
        if (shape_size(op->out) > plan.activation) plan.activation = shape_size(op->out);
        if (op->kind == OP_CONV2D) plan_conv(&op->u.conv, images, threads, &plan);
        if (op->kind == OP_RESIDUAL) {
            for (int b = 0; b < op->u.residual.num_body; b++) plan_conv(&op->u.residual.body[b], images, threads, &plan);
            if (op->u.residual.shortcut) plan_conv(op->u.residual.shortcut, images, threads, &plan);
        }
        if (op->kind == OP_SQUEEZE_EXCITE) {
            size_t s = squeeze_excite_scratch_floats(&op->u.se, 1);
            if (s > plan.scratch) plan.scratch = s;
        }
    }
    return plan;
}

static buffer_plan plan_max(buffer_plan a, buffer_plan b) {
    return (buffer_plan){a.activation > b.activation ? a.activation : b.activation, a.col > b.col ? a.col : b.col,
                         a.scratch > b.scratch ? a.scratch : b.scratch};
}

static bool worker_alloc(worker *w, const buffer_plan *plan, int images) {
    bool ok = true;
    for (int i = 0; i < NUM_BUFFERS; i++) ok = ok && (w->buffers[i] = alloc_lines(plan->activation, (size_t)images * sizeof(float)));
    ok = ok && (w->col = alloc_lines(plan->col ? plan->col : 1, sizeof(float)));
    ok = ok && (w->scratch = alloc_lines(plan->scratch ? plan->scratch : 1, (size_t)images * sizeof(float)));
    for (int i = 0; i < 2; i++) ok = ok && (w->slices[i] = alloc_lines(plan->activation, SLICE_IMAGES * sizeof(float)));
    return ok && (w->trace_buffer = alloc_array(plan->activation, (size_t)images * sizeof(float)));
}

static void worker_free(worker *w) {
    for (int i = 0; i < NUM_BUFFERS; i++) free(w->buffers[i]);
    free(w->col);
    free(w->scratch);
    free(w->trace_buffer);
    free(w->slices[0]);
    free(w->slices[1]);
}

/* Worker 0 runs whole batches with the pool and shares of batches alone; the others, shares. */
static bool session_alloc(emote_session *s, int threads) {
    buffer_plan share = plan_buffers(s->model, s->per_worker, 1);
    buffer_plan whole = plan_max(share, plan_buffers(s->model, s->max_batch, threads));
    if (!(s->workers = calloc_array((size_t)s->num_workers, sizeof(worker)))) return false;
    for (int i = 0; i < s->num_workers; i++)
        if (!worker_alloc(&s->workers[i], i ? &share : &whole, i ? s->per_worker : s->max_batch)) return false;
    return threads == 1 || (s->pool = pool_new(threads)) != NULL;
}

/* Whether `threads` OpenBLAS buffers still fit in the address space (ulimit -v): mapped (not
 * touched) and unmapped again. Where they do not, sgemm would hang; a session is refused. */
static bool blas_buffers_fit(int threads) {
    size_t bytes = BLAS_BUFFER_MAPPED * (size_t)threads;
    void *probe = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED) return false;
    munmap(probe, bytes);
    return true;
}

/* OpenBLAS's table of work buffers (memory.c, as Debian's 0.3.21 builds it): a call takes the
 * first free buffer, mapping it on first use, and gives it back mapped for the next caller.
 * Not in cblas.h; weak, as other BLAS builds lack them. */
extern void *blas_memory_alloc(int procpos) __attribute__((weak));
extern void blas_memory_free(void *buffer) __attribute__((weak));

/* Makes sure `threads` OpenBLAS buffers are mapped now, while the address space is known to
 * hold them: taken all at once (so each is a different one) and given back. The session's
 * threads then find them mapped whatever the rest of the process (decoders) takes later,
 * instead of OpenBLAS retrying a failed mapping forever in the middle of a batch. */
static bool reserve_blas_buffers(int threads) {
    if (!blas_buffers_fit(threads)) return false;
    if (!blas_memory_alloc || !blas_memory_free) return true;
    void *held[MAX_THREADS];
    for (int i = 0; i < threads; i++) held[i] = blas_memory_alloc(0);
    for (int i = 0; i < threads; i++)
        if (held[i]) blas_memory_free(held[i]);
    return true;
}

static bool runs_in_slices(const graph_op *op) {
    bool large = shape_size(op->in) >= SLICE_MIN_FLOATS || shape_size(op->out) >= SLICE_MIN_FLOATS;
    return large && (op->kind == OP_CONV2D || op->kind == OP_MAXPOOL || op->kind == OP_SQUEEZE_EXCITE ||
                     op->kind == OP_RESIDUAL || op->kind == OP_RELU);
}

emote_session *emote_session_new(const emote_model *model, int max_batch, int threads, emote_error *err) {
    if (!model) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_session_new: no model (NULL)");
        return NULL;
    }
    if (max_batch < 1 || max_batch > 65536) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "batch size %d is outside 1..65536", max_batch);
        return NULL;
    }
    if (threads < 0 || threads > MAX_THREADS) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "thread count %d is outside 0..%d", threads, MAX_THREADS);
        return NULL;
    }
    if (model->num_outputs > 0) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "%s is a multi-output model (a detector), not a classifier", model->name);
        return NULL;
    }
    /* Before planning, which sizes their scratch; made while the caller reads its first images. */
    if (model_start_convs(model, true, err)) return NULL;
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
    }
    emote_session *s = calloc(1, sizeof *s);
    if (!s) {
        emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
        return NULL;
    }
    s->model = model;
    s->max_batch = max_batch;
    s->num_workers = threads < max_batch ? threads : max_batch;
    s->per_worker = (max_batch + s->num_workers - 1) / s->num_workers;
    if (!session_alloc(s, threads)) {
        emote_session_free(s);
        emote_fail(err, EMOTE_ERR_MEMORY, "out of memory planning buffers for batches of %d images", max_batch);
        return NULL;
    }
    if (!reserve_blas_buffers(threads)) {
        emote_session_free(s);
        emote_fail(err, EMOTE_ERR_MEMORY,
                   "out of memory: OpenBLAS needs %zu MiB of address space for each of %d threads (ulimit -v?); "
                   "fewer threads (-j) need less", BLAS_BUFFER_BYTES >> 20, threads);
        return NULL;
    }
    while (s->slice_ops < model->num_ops && runs_in_slices(&model->ops[s->slice_ops])) s->slice_ops++;
    /* Only when needed: after blas_thread_shutdown_ (the CLI's stop_blas_threads) this call
     * would start OpenBLAS's idle threads again, and they spin in sched_yield. */
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    return s;
}

void emote_session_free(emote_session *s) {
    if (!s) return;
    pool_free(s->pool);
    for (int i = 0; s->workers && i < s->num_workers; i++) worker_free(&s->workers[i]);
    free(s->workers);
    free(s);
}

const emote_model *emote_session_model(const emote_session *s) { return s ? s->model : NULL; }
int emote_session_max_batch(const emote_session *s) { return s ? s->max_batch : 0; }

void emote_session_set_trace(emote_session *s, emote_trace_fn fn, void *user) {
    if (!s) return;
    s->trace = fn;
    s->trace_user = user;
}

/* NCHW <-> CNHW: swaps the two outer axes of an [a][b][plane] array. */
static void swap_outer_axes(const float *src, float *dst, int a, int b, size_t plane) {
    for (int i = 0; i < a; i++)
        for (int j = 0; j < b; j++) memcpy(dst + ((size_t)j * a + i) * plane, src + ((size_t)i * b + j) * plane, plane * sizeof(float));
}

static void run_residual(worker *w, thread_pool *pool, const residual_layer *r, const float *in, float *out, int n) {
    const float *cur = in;
    float *temps[2] = {w->buffers[BUF_TEMP_A], w->buffers[BUF_TEMP_B]};
    for (int i = 0; i < r->num_body; i++) {
        conv_forward(&r->body[i], cur, temps[i % 2], n, w->col, pool);
        cur = temps[i % 2];
    }
    size_t count = shape_size(r->body[r->num_body - 1].out) * (size_t)n;
    if (r->shortcut) {
        conv_forward(r->shortcut, in, out, n, w->col, pool);
        for (size_t i = 0; i < count; i++) out[i] += cur[i];
    } else {
        for (size_t i = 0; i < count; i++) out[i] = in[i] + cur[i];
    }
    if (r->relu) relu_forward(out, count);
}

/* Runs op on `in` (CNHW), writing `out` or, for the ops that work in place, `in`; returns
 * the buffer that holds the result. */
static float *run_op(worker *w, thread_pool *pool, const graph_op *op, float *in, float *out, float *probs, int n) {
    size_t count = shape_size(op->out) * (size_t)n;
    switch (op->kind) {
    case OP_CONV2D: conv_forward(&op->u.conv, in, out, n, w->col, pool); return out;
    case OP_MAXPOOL: maxpool_forward(&op->u.pool, in, out, n, pool); return out;
    case OP_SQUEEZE_EXCITE:
        squeeze_excite_forward(&op->u.se, in, n, op->in.h * op->in.w, w->scratch, pool);
        return in;
    case OP_RESIDUAL: run_residual(w, pool, &op->u.residual, in, out, n); return out;
    case OP_GLOBAL_AVG_POOL: global_avg_pool_forward(in, out, op->in.c, n, op->in.h * op->in.w); return out;
    case OP_LINEAR: dense_forward(&op->u.linear, in, out, n); return out;
    case OP_RELU: relu_forward(in, count); return in;
    case OP_SOFTMAX: softmax_forward(in, probs, op->in.c, n); return probs;
    case OP_UPSAMPLE:
    case OP_ADD: break; /* multi-output graphs only: src/net.c */
    }
    return out;
}

static void trace_op(const emote_session *s, worker *w, int index, const graph_op *op, const float *result, int n) {
    const float *nchw = result;
    if (op->kind != OP_SOFTMAX) { /* softmax already wrote [N][K] */
        swap_outer_axes(result, w->trace_buffer, op->out.c, n, (size_t)op->out.h * op->out.w);
        nchw = w->trace_buffer;
    }
    s->trace(s->trace_user, index, op_kind_name(op->kind), nchw, n, op->out.c, op->out.h, op->out.w);
}

typedef struct {
    const emote_session *session;
    worker *worker;
    thread_pool *pool; /* splits each conv; NULL when the job has its thread to itself */
    const float *inputs; /* NCHW */
    float *probs;
    int n;
    int end_op;      /* ops [0, end_op) run: num_ops, or the head op for features */
    float *features; /* end_op < num_ops: n rows of the head's input */
} job;

/* Runs ops [first, end) on n images in buffers[0] (CNHW), ping-ponging with buffers[1];
 * returns the buffer that holds the result. */
static float *run_ops(const job *j, int first, int end, float *const buffers[2], int n) {
    float *cur = buffers[0];
    for (int i = first; i < end; i++) {
        const graph_op *op = &j->session->model->ops[i];
        cur = run_op(j->worker, j->pool, op, cur, cur == buffers[0] ? buffers[1] : buffers[0], j->probs, n);
        if (j->session->trace) trace_op(j->session, j->worker, i, op, cur, n);
    }
    return cur;
}

/* Runs the whole graph on one job's images: the leading slice_ops a slice at a time. */
static void run_job(const job *j) {
    const emote_model *m = j->session->model;
    worker *w = j->worker;
    const size_t in_plane = (size_t)m->input.height * m->input.width;
    float *main_buffers[2] = {w->buffers[BUF_MAIN_A], w->buffers[BUF_MAIN_B]};
    int first_op = j->n > SLICE_IMAGES && !j->session->trace ? j->session->slice_ops : 0;
    if (first_op) {
        const shape3 out = m->ops[first_op - 1].out;
        const size_t out_plane = (size_t)out.h * out.w;
        for (int first = 0; first < j->n; first += SLICE_IMAGES) {
            const int n = j->n - first < SLICE_IMAGES ? j->n - first : SLICE_IMAGES;
            swap_outer_axes(j->inputs + first * m->input.channels * in_plane, w->slices[0], n, m->input.channels,
                            in_plane);
            const float *slice = run_ops(j, 0, first_op, w->slices, n);
            for (int c = 0; c < out.c; c++)
                memcpy(main_buffers[0] + ((size_t)c * j->n + first) * out_plane, slice + (size_t)c * n * out_plane,
                       n * out_plane * sizeof(float));
        }
    } else {
        swap_outer_axes(j->inputs, main_buffers[0], j->n, m->input.channels, in_plane);
    }
    const float *result = run_ops(j, first_op, j->end_op, main_buffers, j->n);
    if (j->end_op < m->num_ops) swap_outer_axes(result, j->features, m->ops[j->end_op].in.c, j->n, 1);
}

static void run_job_task(void *jobs, int task, int thread) {
    (void)thread;
    run_job((const job *)jobs + task);
}

/* Runs ops [0, end_op) on n images: into probs (rows of num_classes) when end_op is the
 * whole graph, else into out (rows of the end op's input size). */
static emote_status run_batch(emote_session *s, const float *inputs, int n, int end_op, float *out, emote_error *err) {
    if (n < 1 || n > s->max_batch)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "batch of %d images is outside 1..%d", n, s->max_batch);
    const emote_model *m = s->model;
    model_wait_convs(m);
    size_t in_floats = emote_input_floats(m);
    bool whole = end_op == m->num_ops;
    size_t row = whole ? (size_t)m->num_classes : (size_t)m->ops[end_op].in.c;
    if (s->trace || s->num_workers == 1 || n == 1) {
        job one = {s, &s->workers[0], s->pool, inputs, whole ? out : NULL, n, end_op, whole ? NULL : out};
        run_job(&one);
        return EMOTE_OK;
    }
    job jobs[MAX_THREADS];
    int per = (n + s->num_workers - 1) / s->num_workers, count = 0;
    for (int first = 0; first < n; first += per, count++) {
        float *rows = out + (size_t)first * row;
        jobs[count] = (job){s, &s->workers[count], NULL, inputs + (size_t)first * in_floats, whole ? rows : NULL,
                            n - first < per ? n - first : per, end_op, whole ? NULL : rows};
    }
    pool_run(s->pool, run_job_task, jobs, count);
    return EMOTE_OK;
}

emote_status emote_classify(emote_session *s, const float *inputs, int n, float *probs, emote_error *err) {
    if (!s || !inputs || !probs)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_classify: no %s (NULL)",
                          !s ? "session" : !inputs ? "inputs" : "probs");
    return run_batch(s, inputs, n, s->model->num_ops, probs, err);
}

emote_status emote_features(emote_session *s, const float *inputs, int n, float *features, emote_error *err) {
    if (!s || !inputs || !features)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_features: no %s (NULL)",
                          !s ? "session" : !inputs ? "inputs" : "features");
    int head = model_head_op(s->model);
    if (head < 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT,
                          "%s has no final dense layer (its graph does not end with linear + softmax)",
                          s->model->name);
    return run_batch(s, inputs, n, head, features, err);
}
