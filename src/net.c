/* Runs a multi-output graph on one image. Shapes are inferred again for each input size
 * (op_set_input, as the loader does at the nominal size) on a shallow copy of the op list;
 * the layers are the same kernels the batch session runs. Each op's output lives from the
 * op that makes it to the last op that reads it; requested outputs are copied out.
 *
 * Buffers are reused: a value no later op reads becomes a spare that a later op's output
 * (the smallest spare that fits) takes, and at the end of a run the spares (up to
 * NET_CACHE_MAX_FLOATS) stay with the model for its next run (emote_model_close frees
 * them): fresh pages cost a page fault each, as much as a quarter of a 640x480 detection.
 * Runs on other threads at the same time find none and allocate their own. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "net.h"
#include "util.h"

/* Floats of spare buffers a model keeps between runs (64 MiB). */
#define NET_CACHE_MAX_FLOATS ((size_t)16 << 20)

typedef struct {
    float *data;
    size_t floats;
} spare_buffer;

struct net_cache {
    int count;
    spare_buffer item[];
};

void net_cache_free(struct net_cache *c) {
    for (int i = 0; c && i < c->count; i++) free(c->item[i].data);
    free(c);
}

typedef struct {
    graph_op *ops;   /* shallow copy: shapes for this input, weights shared with the model */
    int *last_use;   /* index of the last op reading op i's output (num_ops: an output) */
    float **values;  /* op outputs, CHW */
    float *col;      /* im2col scratch */
    size_t col_floats;
    spare_buffer *spare; /* room for 2 * (num_ops + 1): the model's and this run's */
    int num_spare;
    size_t *floats; /* capacity of values[i] */
} net_state;

static void state_free(net_state *st, int num_ops) {
    for (int i = 0; st->values && i < num_ops; i++) free(st->values[i]);
    free(st->values);
    for (int i = 0; i < st->num_spare; i++) free(st->spare[i].data);
    free(st->spare);
    free(st->floats);
    free(st->ops);
    free(st->last_use);
    free(st->col);
}

static emote_status check_size(const emote_model *m, int height, int width, emote_error *err) {
    if (m->num_outputs == 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s is a classifier, not a multi-output model", m->name);
    int multiple = m->size_multiple;
    bool fits = multiple ? height >= multiple && width >= multiple && height % multiple == 0 && width % multiple == 0 &&
                               height <= GRAPH_MAX_SIDE && width <= GRAPH_MAX_SIDE
                         : height == m->input.height && width == m->input.width;
    if (!fits && multiple)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: input %dx%d must be multiples of %d, at most %d", m->name,
                          width, height, multiple, GRAPH_MAX_SIDE);
    if (!fits)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: input %dx%d must be %dx%d", m->name, width, height,
                          m->input.width, m->input.height);
    return EMOTE_OK;
}

static float *take_buffer(net_state *st, size_t floats, size_t *got);

/* Shapes for this input size, the scratch they need and each value's lifetime. */
static emote_status plan(const emote_model *m, int height, int width, net_state *st, emote_error *err) {
    int n = m->num_ops;
    st->ops = malloc(sizeof(graph_op) * (size_t)n);
    st->last_use = malloc(sizeof(int) * (size_t)n);
    st->values = calloc_array((size_t)n, sizeof(float *));
    st->spare = calloc_array(2 * ((size_t)n + 1), sizeof *st->spare);
    st->floats = calloc_array((size_t)n, sizeof(size_t));
    if (!st->ops || !st->last_use || !st->values || !st->spare || !st->floats)
        return emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
    struct net_cache *cache = atomic_exchange(&((emote_model *)m)->net_cache, NULL);
    for (int i = 0; cache && i < cache->count && i <= n; i++) st->spare[st->num_spare++] = cache->item[i];
    if (cache) cache->count = 0;
    free(cache);
    memcpy(st->ops, m->ops, sizeof(graph_op) * (size_t)n);
    int bad = graph_set_input(st->ops, n, (shape3){m->input.channels, height, width});
    if (bad >= 0) /* the loader checked the adds at every size: the input is too small */
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: a %dx%d input is too small for op %d (%s)", m->name, width,
                          height, bad, op_kind_name(st->ops[bad].kind));
    size_t col = 1;
    for (int i = 0; i < n; i++) {
        const graph_op *op = &st->ops[i];
        if (op->kind == OP_CONV2D && conv_col_floats(&op->u.conv, 1, 1) > col) col = conv_col_floats(&op->u.conv, 1, 1);
        st->last_use[i] = i;
        if (op->input_op >= 0) st->last_use[op->input_op] = i;
        if (op->with_op >= 0) st->last_use[op->with_op] = i;
    }
    for (int k = 0; k < m->num_outputs; k++) st->last_use[m->output_ops[k]] = n;
    if (!(st->col = take_buffer(st, col, &st->col_floats))) return emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
    return EMOTE_OK;
}

/* A buffer of at least `floats` (its capacity in *got): the smallest spare one that fits,
 * else a new one. */
static float *take_buffer(net_state *st, size_t floats, size_t *got) {
    int best = -1;
    for (int k = 0; k < st->num_spare; k++)
        if (st->spare[k].floats >= floats && (best < 0 || st->spare[k].floats < st->spare[best].floats)) best = k;
    if (best < 0) {
        *got = floats;
        return alloc_array(floats, sizeof(float));
    }
    float *b = st->spare[best].data;
    *got = st->spare[best].floats;
    st->spare[best] = st->spare[--st->num_spare];
    return b;
}

static void give_back(net_state *st, float *data, size_t floats) {
    if (data) st->spare[st->num_spare++] = (spare_buffer){data, floats};
}

static int by_floats_desc(const void *a, const void *b) {
    const spare_buffer *x = a, *y = b;
    return (x->floats < y->floats) - (x->floats > y->floats);
}

/* The run's buffers, the largest first while they fit NET_CACHE_MAX_FLOATS, to the model for
 * its next run; the rest freed. */
static void keep_buffers(const emote_model *m, net_state *st) {
    for (int i = 0; i < m->num_ops; i++) {
        give_back(st, st->values[i], st->floats[i]);
        st->values[i] = NULL;
    }
    give_back(st, st->col, st->col_floats);
    st->col = NULL;
    qsort(st->spare, (size_t)st->num_spare, sizeof *st->spare, by_floats_desc);
    struct net_cache *cache = malloc(sizeof *cache + sizeof(spare_buffer) * ((size_t)m->num_ops + 1));
    size_t total = 0;
    int kept = 0;
    for (int k = 0; cache && k < st->num_spare; k++) {
        if (kept <= m->num_ops && total + st->spare[k].floats <= NET_CACHE_MAX_FLOATS) {
            total += st->spare[k].floats;
            cache->item[kept++] = st->spare[k];
        } else {
            free(st->spare[k].data);
        }
    }
    if (cache) {
        st->num_spare = 0;
        cache->count = kept;
        net_cache_free(atomic_exchange(&((emote_model *)m)->net_cache, cache));
    }
}

static void run_op(const graph_op *op, const float *in, const float *with, float *out, float *col) {
    size_t count = shape_size(op->out);
    switch (op->kind) {
    case OP_CONV2D: conv_forward(&op->u.conv, in, out, 1, col, NULL); break;
    case OP_MAXPOOL: maxpool_forward(&op->u.pool, in, out, 1, NULL); break;
    case OP_UPSAMPLE: upsample_forward(in, out, (size_t)op->in.c, op->in.h, op->in.w, op->scale); break;
    case OP_ADD: add_forward(in, with, out, count); break;
    case OP_RELU:
        memcpy(out, in, count * sizeof(float));
        relu_forward(out, count);
        break;
    default: break; /* the loader admits no other op into a multi-output graph */
    }
}

static emote_status copy_outputs(const emote_model *m, const net_state *st, emote_tensor *outputs, emote_error *err) {
    for (int k = 0; k < m->num_outputs; k++) {
        shape3 s = st->ops[m->output_ops[k]].out;
        outputs[k] = (emote_tensor){s.c, s.h, s.w, alloc_array(shape_size(s), sizeof(float))};
        if (!outputs[k].data) {
            emote_tensors_free(outputs, k);
            return emote_fail(err, EMOTE_ERR_MEMORY, "out of memory");
        }
        memcpy(outputs[k].data, st->values[m->output_ops[k]], shape_size(s) * sizeof(float));
    }
    return EMOTE_OK;
}

emote_status net_run(const emote_model *m, const float *input, int height, int width, emote_tensor *outputs,
                     net_trace_fn trace, void *user, emote_error *err) {
    emote_status s = check_size(m, height, width, err);
    if (s || (s = model_start_convs(m, false, err))) return s;
    net_state st = {0};
    if ((s = plan(m, height, width, &st, err))) {
        keep_buffers(m, &st);
        state_free(&st, m->num_ops);
        return s;
    }
    for (int i = 0; i < m->num_ops && !s; i++) {
        const graph_op *op = &st.ops[i];
        if (!(st.values[i] = take_buffer(&st, shape_size(op->out), &st.floats[i]))) {
            s = emote_fail(err, EMOTE_ERR_MEMORY, "out of memory running op %d of %s", i, m->name);
            break;
        }
        const float *in = op->input_op < 0 ? input : st.values[op->input_op];
        run_op(op, in, op->with_op < 0 ? NULL : st.values[op->with_op], st.values[i], st.col);
        if (trace) trace(user, i, op_kind_name(op->kind), st.values[i], op->out.c, op->out.h, op->out.w);
        for (int j = 0; j < i; j++) /* values no later op reads */
            if (st.values[j] && st.last_use[j] == i) {
                give_back(&st, st.values[j], st.floats[j]);
                st.values[j] = NULL;
            }
    }
    if (!s) s = copy_outputs(m, &st, outputs, err);
    keep_buffers(m, &st);
    state_free(&st, m->num_ops);
    return s;
}

emote_status emote_model_run(const emote_model *m, const float *input, int height, int width, emote_tensor *outputs,
                             emote_error *err) {
    if (!m || !input || !outputs)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_model_run: no %s (NULL)",
                          !m ? "model" : !input ? "input" : "outputs");
    return net_run(m, input, height, width, outputs, NULL, NULL, err);
}

void emote_tensors_free(emote_tensor *tensors, int n) {
    for (int i = 0; tensors && i < n; i++) {
        free(tensors[i].data);
        tensors[i].data = NULL;
    }
}

int emote_model_num_outputs(const emote_model *m) { return m ? m->num_outputs : 0; }
const char *emote_model_output_name(const emote_model *m, int i) {
    return m && i >= 0 && i < m->num_outputs ? m->output_names[i] : NULL;
}
int emote_model_size_multiple(const emote_model *m) { return m ? m->size_multiple : 0; }
