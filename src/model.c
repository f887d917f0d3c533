/* Model files: safetensors + __metadata__ (labels, input spec, graph) -> a validated
 * emote_model. Nothing in the file is trusted: every tensor the graph names must exist
 * with the shape the graph implies, weights must be finite, and shapes must flow from
 * the input to one logit per label. A conv's BatchNorm becomes a per-channel scale and shift
 * applied after its GEMM, so no weight is rewritten: where the file's bytes outlive the model
 * (the built-in models, a file read by emote_model_open) tensors are used in place. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "graph.h"
#include "layers/layers.h"
#include "net.h"
#include "safetensors.h"
#include "builtin_models.h"
#include "string_table.h"
#include "utf8.h"
#include "util.h"

#define MODEL_MAX_FILE_BYTES ((size_t)2 << 30)
/* The weights a model copies (after sharing, with BatchNorm scales and shifts) may take at most twice
 * its file size plus this much: a file cannot make the loader copy a tensor without end. */
#define MODEL_WEIGHT_SLACK_BYTES ((size_t)64 << 20)
/* Input normalisation: std at least this, |mean| at most MAX_INPUT_MEAN (as floats). */
#define MIN_INPUT_STD 1e-6
#define MAX_INPUT_STD 1e6
#define MAX_INPUT_MEAN 1e6
#define MAX_DIMENSION 4096
#define MAX_OPS 1024
#define MODEL_FORMAT "emote-model/1"
#define PREPROCESS_VERSION "emote/1"


typedef struct {
    const st_file *file;
    const char *name;  /* file name for messages */
    char where[64];    /* "graph op 3 (residual)" for messages */
    emote_error *err;
    uint64_t params;
    emote_model *model;    /* owns every weight buffer */
    bool in_place;         /* the file's bytes outlive the model: tensors may point into them */
    bool values_checked;   /* a built-in model: its values were checked when it was built in */
    string_table shared;   /* tensor name -> index in tensors: each tensor is loaded once */
    const float **tensors; /* every tensor loaded so far, in the file or in model->weights */
    int num_tensors, tensors_capacity;
    size_t floats_left;    /* weight budget */
} loader;

__attribute__((format(printf, 2, 3))) static emote_status load_fail(loader *ld, const char *fmt, ...) {
    char reason[EMOTE_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (ld->where[0]) return emote_fail(ld->err, EMOTE_ERR_FORMAT, "%s: %s: %s", ld->name, ld->where, reason);
    return emote_fail(ld->err, EMOTE_ERR_FORMAT, "%s: %s", ld->name, reason);
}

const char *op_kind_name(op_kind kind) {
    static const char *const names[] = {"conv2d", "maxpool", "squeeze_excite", "residual", "global_avg_pool",
                                        "linear", "relu", "softmax", "upsample", "add"};
    return names[kind];
}

/* ---- JSON field readers -------------------------------------------------- */

static emote_status json_int(loader *ld, const cJSON *obj, const char *key, int min, int max, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    /* Range-checked as a double before any conversion (NaN fails every comparison). */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
        v->valuedouble != floor(v->valuedouble))
        return load_fail(ld, "'%s' must be an integer in [%d, %d]", key, min, max);
    *out = (int)v->valuedouble;
    return EMOTE_OK;
}

static emote_status json_bool(loader *ld, const cJSON *obj, const char *key, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsBool(v)) return load_fail(ld, "'%s' must be true or false", key);
    *out = cJSON_IsTrue(v);
    return EMOTE_OK;
}

/* A tensor reference: a string naming a tensor, or null when `optional`. *name = NULL for null. */
static emote_status json_tensor_ref(loader *ld, const cJSON *obj, const char *key, bool optional, const char **name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *name = NULL;
    if (cJSON_IsString(v)) {
        *name = v->valuestring;
        return EMOTE_OK;
    }
    if (optional && (!v || cJSON_IsNull(v))) return EMOTE_OK;
    return load_fail(ld, "'%s' must name a tensor%s", key, optional ? " or be null" : "");
}

/* ---- tensors ------------------------------------------------------------- */

static void format_shape(char *buf, size_t cap, const size_t *dims, size_t ndim) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %zu" : "%zu", dims[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* A new zeroed weight buffer of count floats, owned by the model and charged to the budget. */
static emote_status new_weights(loader *ld, size_t count, float **out) {
    emote_model *m = ld->model;
    if (count > ld->floats_left)
        return emote_fail(ld->err, EMOTE_ERR_LIMIT,
                          "%s: the weights take more than the limit of twice the file's size plus %zu MiB "
                          "(a large tensor named by many ops with batchnorm?)", ld->name, MODEL_WEIGHT_SLACK_BYTES >> 20);
    float **weights = array_reserve_one(m->weights, m->num_weights, &m->weights_capacity, sizeof(float *));
    float *data = weights ? calloc_array(count, sizeof(float)) : NULL;
    if (weights) m->weights = weights;
    if (!data) return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    ld->floats_left -= count;
    m->weights[m->num_weights++] = data;
    *out = data;
    return EMOTE_OK;
}

/* Index of the first NaN or infinity in x[0..n), or n. The first pass has no early exit, so
 * that it vectorises. */
static size_t first_non_finite(const float *x, size_t n) {
    uint32_t all_ones = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        all_ones |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    size_t i = 0;
    while (all_ones && i < n && isfinite(x[i])) i++;
    return all_ones ? i : n;
}

/* The tensor's floats: in the file itself where it outlives the model and they are aligned and
 * little-endian, else a copy in a new weight buffer. */
static emote_status tensor_floats(loader *ld, const st_tensor *t, const float **out) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (ld->in_place && (uintptr_t)t->data % _Alignof(float) == 0) {
        *out = (const void *)t->data;
        return EMOTE_OK;
    }
#endif
    float *copy;
    emote_status s = new_weights(ld, t->numel, &copy);
    if (s) return s;
    st_read_floats(t, copy);
    *out = copy;
    return EMOTE_OK;
}

/* Tensor `tname` as floats after checking its shape and values; every reference to it gets
 * the same floats, loaded once. *loaded: it was read now. */
static emote_status load_tensor(loader *ld, const char *tname, const size_t *dims, size_t ndim, const float **out,
                                bool *loaded) {
    *out = NULL;
    if (loaded) *loaded = false;
    const st_tensor *t = st_find(ld->file, tname);
    if (!t) return load_fail(ld, "tensor '%s' is missing from the file", tname);
    bool same = t->ndim == ndim;
    for (size_t i = 0; same && i < ndim; i++) same = t->shape[i] == dims[i];
    if (!same) {
        char want[96], got[96];
        format_shape(want, sizeof want, dims, ndim);
        format_shape(got, sizeof got, t->shape, t->ndim);
        return load_fail(ld, "tensor '%s' has shape %s, expected %s", tname, got, want);
    }
    int index = table_find(&ld->shared, t->name);
    if (index >= 0) {
        *out = ld->tensors[index];
        return EMOTE_OK;
    }
    const float *data;
    emote_status s = tensor_floats(ld, t, &data);
    if (s) return s;
    size_t bad = ld->values_checked ? t->numel : first_non_finite(data, t->numel);
    if (bad < t->numel)
        return load_fail(ld, "tensor '%s' holds a non-finite value (%g) at element %zu", tname, (double)data[bad], bad);
    const float **tensors = array_reserve_one(ld->tensors, ld->num_tensors, &ld->tensors_capacity, sizeof *tensors);
    if (tensors) ld->tensors = tensors;
    if (!tensors || table_add(&ld->shared, t->name, ld->num_tensors) < 0)
        return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    ld->tensors[ld->num_tensors++] = data;
    if (loaded) *loaded = true;
    *out = data;
    return EMOTE_OK;
}

static emote_status load_vector(loader *ld, const char *tname, int length, const float **out, bool *loaded) {
    size_t dims[1] = {(size_t)length};
    return load_tensor(ld, tname, dims, 1, out, loaded);
}

/* ---- layers -------------------------------------------------------------- */

/* BatchNorm(eval) after conv: y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta
 * = conv(x) * scale + shift, per output channel, applied after the conv's GEMM. */
static emote_status batchnorm_scale_shift(loader *ld, const cJSON *bn, conv_layer *c) {
    const char *names[4];
    static const char *const keys[4] = {"weight", "bias", "mean", "var"};
    const float *v[4] = {NULL, NULL, NULL, NULL};
    bool loaded[4] = {false, false, false, false};
    emote_status s = EMOTE_OK;
    const cJSON *eps_item = cJSON_GetObjectItemCaseSensitive(bn, "eps");
    if (!cJSON_IsNumber(eps_item) || !(eps_item->valuedouble >= 0) || !isfinite(eps_item->valuedouble))
        return load_fail(ld, "batchnorm 'eps' must be a non-negative number");
    for (int i = 0; i < 4 && s == EMOTE_OK; i++) {
        s = json_tensor_ref(ld, bn, keys[i], false, &names[i]);
        if (s == EMOTE_OK) s = load_vector(ld, names[i], c->cout, &v[i], &loaded[i]);
    }
    float *scale = NULL, *shift = NULL;
    if (s || (s = new_weights(ld, (size_t)c->cout, &scale)) || (s = new_weights(ld, (size_t)c->cout, &shift))) return s;
    for (int o = 0; o < c->cout; o++) {
        double var = (double)v[3][o] + eps_item->valuedouble;
        if (!(var > 0)) return load_fail(ld, "batchnorm variance + eps is not positive for channel %d", o);
        double gain = (double)v[0][o] / sqrt(var);
        scale[o] = (float)gain;
        shift[o] = (float)(((double)c->bias[o] - v[2][o]) * gain + v[1][o]);
    }
    c->scale = scale;
    c->bias = shift;
    /* gamma, beta (running stats are buffers) */
    ld->params += (uint64_t)c->cout * ((uint64_t)loaded[0] + (uint64_t)loaded[1]);
    return EMOTE_OK;
}

static emote_status conv_tensors(loader *ld, const char *wname, const char *bname, conv_layer *c) {
    size_t dims[4] = {(size_t)c->cout, (size_t)(c->cin / c->groups), (size_t)c->kh, (size_t)c->kw};
    bool loaded;
    emote_status s = load_tensor(ld, wname, dims, 4, &c->weight, &loaded);
    if (s) return s;
    if (loaded) ld->params += shape_size((shape3){c->cout, c->cin / c->groups, c->kh * c->kw});
    if (!bname) {
        float *zeros = NULL;
        s = new_weights(ld, (size_t)c->cout, &zeros);
        c->bias = zeros;
        return s;
    }
    if ((s = load_vector(ld, bname, c->cout, &c->bias, &loaded))) return s;
    if (loaded) ld->params += (uint64_t)c->cout;
    return EMOTE_OK;
}

/* "groups": absent or 1 (a dense conv), or the input channel count = the output channel
 * count (a depthwise conv). */
static emote_status parse_groups(loader *ld, const cJSON *op, conv_layer *c) {
    c->groups = 1;
    if (!cJSON_GetObjectItemCaseSensitive(op, "groups")) return EMOTE_OK;
    emote_status s = json_int(ld, op, "groups", 1, 65536, &c->groups);
    if (s) return s;
    if (c->groups != 1 && (c->groups != c->cin || c->groups != c->cout))
        return load_fail(ld, "'groups' must be 1 or the channel count (%d in, %d out) for a depthwise conv", c->cin,
                         c->cout);
    return EMOTE_OK;
}

static emote_status parse_conv(loader *ld, const cJSON *op, shape3 in, conv_layer *c) {
    memset(c, 0, sizeof *c);
    const char *wname, *bname;
    emote_status s;
    if ((s = json_tensor_ref(ld, op, "weight", false, &wname)) || (s = json_tensor_ref(ld, op, "bias", true, &bname)) ||
        (s = json_int(ld, op, "stride", 1, 64, &c->stride)) || (s = json_int(ld, op, "padding", 0, 64, &c->padding)) ||
        (s = json_bool(ld, op, "relu", &c->relu)))
        return s;
    const st_tensor *w = st_find(ld->file, wname);
    if (!w) return load_fail(ld, "tensor '%s' is missing from the file", wname);
    if (w->ndim != 4 || w->shape[0] < 1 || w->shape[0] > 65536 || w->shape[2] < 1 || w->shape[2] > 64 ||
        w->shape[3] < 1 || w->shape[3] > 64)
        return load_fail(ld, "conv weight '%s' must be [out, in, kh, kw] with kernels of 1..64", wname);
    c->cout = (int)w->shape[0];
    c->cin = in.c;
    c->kh = (int)w->shape[2];
    c->kw = (int)w->shape[3];
    if ((s = parse_groups(ld, op, c))) return s;
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(op, "batchnorm");
    if (bn && !cJSON_IsNull(bn) && !cJSON_IsObject(bn)) return load_fail(ld, "'batchnorm' must be an object or null");
    if ((s = conv_tensors(ld, wname, bname, c))) return s;
    if (cJSON_IsObject(bn) && (s = batchnorm_scale_shift(ld, bn, c))) return s;
    graph_op shaped = {.kind = OP_CONV2D, .u.conv = *c};
    if (!op_set_input(&shaped, in, in))
        return load_fail(ld, "a %dx%d kernel does not fit the %dx%d input", c->kh, c->kw, in.h, in.w);
    *c = shaped.u.conv;
    return EMOTE_OK;
}

static emote_status parse_dense(loader *ld, const cJSON *obj, int in, int *out_features, dense_layer *d) {
    memset(d, 0, sizeof *d);
    const char *wname, *bname;
    emote_status s;
    if ((s = json_tensor_ref(ld, obj, "weight", false, &wname)) || (s = json_tensor_ref(ld, obj, "bias", true, &bname)))
        return s;
    const st_tensor *w = st_find(ld->file, wname);
    if (!w) return load_fail(ld, "tensor '%s' is missing from the file", wname);
    if (w->ndim != 2 || w->shape[0] < 1 || w->shape[0] > 1000000)
        return load_fail(ld, "linear weight '%s' must be [out, in]", wname);
    d->in = in;
    d->out = (int)w->shape[0];
    size_t dims[2] = {(size_t)d->out, (size_t)d->in};
    bool loaded;
    if ((s = load_tensor(ld, wname, dims, 2, &d->weight, &loaded))) return s;
    if (loaded) ld->params += (uint64_t)d->out * (uint64_t)d->in;
    if (bname) {
        if ((s = load_vector(ld, bname, d->out, &d->bias, &loaded))) return s;
        if (loaded) ld->params += (uint64_t)d->out;
    }
    *out_features = d->out;
    return EMOTE_OK;
}

static emote_status parse_squeeze_excite(loader *ld, const cJSON *op, shape3 in, squeeze_excite_layer *se) {
    const cJSON *fc1 = cJSON_GetObjectItemCaseSensitive(op, "fc1");
    const cJSON *fc2 = cJSON_GetObjectItemCaseSensitive(op, "fc2");
    if (!cJSON_IsObject(fc1) || !cJSON_IsObject(fc2)) return load_fail(ld, "'fc1' and 'fc2' must be objects");
    int hidden, back;
    emote_status s = parse_dense(ld, fc1, in.c, &hidden, &se->fc1);
    if (s || (s = parse_dense(ld, fc2, hidden, &back, &se->fc2))) return s;
    if (back != in.c) return load_fail(ld, "fc2 gives %d channel scales for %d channels", back, in.c);
    return EMOTE_OK;
}

/* Layers own no weights (the model does): only a residual's arrays are freed. */
static void free_residual(residual_layer *r) {
    free(r->body);
    free(r->shortcut);
    memset(r, 0, sizeof *r);
}

static emote_status parse_residual(loader *ld, const cJSON *op, shape3 in, residual_layer *r, shape3 *out) {
    memset(r, 0, sizeof *r);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(op, "body");
    const cJSON *shortcut = cJSON_GetObjectItemCaseSensitive(op, "shortcut");
    int n = cJSON_IsArray(body) ? cJSON_GetArraySize(body) : 0;
    if (n < 1 || n > 64) return load_fail(ld, "'body' must be a list of 1 to 64 conv2d ops");
    emote_status s = json_bool(ld, op, "relu", &r->relu);
    if (s) return s;
    if (!(r->body = calloc_array((size_t)n, sizeof(conv_layer))))
        return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    shape3 cur = in;
    const cJSON *item;
    cJSON_ArrayForEach(item, body) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "op");
        if (!cJSON_IsString(kind) || strcmp(kind->valuestring, "conv2d") != 0) {
            s = load_fail(ld, "body op %d is not a conv2d", r->num_body);
            goto fail;
        }
        if ((s = parse_conv(ld, item, cur, &r->body[r->num_body]))) goto fail;
        cur = r->body[r->num_body++].out;
    }
    shape3 skip = in;
    if (cJSON_IsObject(shortcut)) {
        if (!(r->shortcut = calloc(1, sizeof(conv_layer)))) {
            s = emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
            goto fail;
        }
        if ((s = parse_conv(ld, shortcut, in, r->shortcut))) goto fail;
        skip = r->shortcut->out;
    } else if (shortcut && !cJSON_IsNull(shortcut)) {
        s = load_fail(ld, "'shortcut' must be a conv2d op or null");
        goto fail;
    }
    if (skip.c != cur.c || skip.h != cur.h || skip.w != cur.w) {
        s = load_fail(ld, "body gives %dx%dx%d but the shortcut gives %dx%dx%d", cur.c, cur.h, cur.w, skip.c, skip.h,
                      skip.w);
        goto fail;
    }
    *out = cur;
    return EMOTE_OK;
fail:
    free_residual(r);
    return s;
}

static void free_op(graph_op *op) {
    if (op->kind == OP_RESIDUAL) free_residual(&op->u.residual);
}

static uint64_t conv_macs(const conv_layer *c) {
    return (uint64_t)shape_size(c->out) * (uint64_t)(c->cin / c->groups) * (uint64_t)(c->kh * c->kw);
}

/* Multiply-adds of convs and linear layers, as tools/emote_model.py count_flops counts them. */
static uint64_t op_macs(const graph_op *op) {
    switch (op->kind) {
    case OP_CONV2D: return conv_macs(&op->u.conv);
    case OP_SQUEEZE_EXCITE:
        return (uint64_t)op->u.se.fc1.in * op->u.se.fc1.out * 2u;
    case OP_RESIDUAL: {
        uint64_t m = op->u.residual.shortcut ? conv_macs(op->u.residual.shortcut) : 0;
        for (int i = 0; i < op->u.residual.num_body; i++) m += conv_macs(&op->u.residual.body[i]);
        return m;
    }
    case OP_LINEAR: return (uint64_t)op->u.linear.in * (uint64_t)op->u.linear.out;
    default: return 0;
    }
}

static void describe_op(graph_op *op) {
    char *d = op->description;
    size_t cap = sizeof op->description;
    int used = snprintf(d, cap, "%s", op_kind_name(op->kind));
    if (op->kind == OP_CONV2D)
        used += snprintf(d + used, cap - (size_t)used, " %dx%d/%d", op->u.conv.kh, op->u.conv.kw, op->u.conv.stride);
    if (op->kind == OP_MAXPOOL)
        used += snprintf(d + used, cap - (size_t)used, " %dx%d/%d", op->u.pool.kernel, op->u.pool.kernel,
                         op->u.pool.stride);
    if (op->kind == OP_RESIDUAL)
        used += snprintf(d + used, cap - (size_t)used, " (%d convs, %s shortcut)", op->u.residual.num_body,
                         op->u.residual.shortcut ? "projection" : "identity");
    snprintf(d + used, cap - (size_t)used, " %dx%dx%d -> %dx%dx%d", op->in.c, op->in.h, op->in.w, op->out.c,
             op->out.h, op->out.w);
}

/* "the input" or "op 3 (upsample)": where a value comes from, for messages. */
static void value_source(const graph_op *ops, int op, char *buf, size_t cap) {
    if (op < 0) snprintf(buf, cap, "the input");
    else snprintf(buf, cap, "op %d (%s)", op, op_kind_name(ops[op].kind));
}

/* An add whose operands (shapes set in ops) differ; `when` starts the message. */
static emote_status add_mismatch(loader *ld, const graph_op *ops, const graph_op *add, const char *when) {
    char a[48], b[48];
    value_source(ops, add->input_op, a, sizeof a);
    value_source(ops, add->with_op, b, sizeof b);
    shape3 x = add->in, y = ops[add->with_op].out;
    return load_fail(ld, "%sadds %s, %dx%dx%d, and %s, %dx%dx%d: the shapes differ", when, a, x.c, x.h, x.w, b, y.c,
                     y.h, y.w);
}

static emote_status parse_op(loader *ld, const cJSON *json, shape3 in, shape3 with, bool last, graph_op *op) {
    const cJSON *kind_item = cJSON_GetObjectItemCaseSensitive(json, "op");
    const char *kind = cJSON_IsString(kind_item) ? kind_item->valuestring : "";
    bool is_vector = in.h == 1 && in.w == 1;
    emote_status s = EMOTE_OK;
    op->in = op->out = in;
    if (strcmp(kind, "conv2d") == 0) {
        op->kind = OP_CONV2D;
        if (!(s = parse_conv(ld, json, in, &op->u.conv))) op->out = op->u.conv.out;
    } else if (strcmp(kind, "maxpool") == 0) {
        maxpool_layer *p = &op->u.pool;
        op->kind = OP_MAXPOOL;
        if ((s = json_int(ld, json, "kernel", 1, 64, &p->kernel)) || (s = json_int(ld, json, "stride", 1, 64, &p->stride)) ||
            (s = json_int(ld, json, "padding", 0, p->kernel / 2, &p->padding)))
            return s;
        if (in.h + 2 * p->padding < p->kernel || in.w + 2 * p->padding < p->kernel)
            return load_fail(ld, "a %dx%d pool does not fit the %dx%d input", p->kernel, p->kernel, in.h, in.w);
        p->in = in;
        p->out = op->out = (shape3){in.c, (in.h + 2 * p->padding - p->kernel) / p->stride + 1,
                                    (in.w + 2 * p->padding - p->kernel) / p->stride + 1};
    } else if (strcmp(kind, "squeeze_excite") == 0) {
        op->kind = OP_SQUEEZE_EXCITE;
        s = parse_squeeze_excite(ld, json, in, &op->u.se);
    } else if (strcmp(kind, "residual") == 0) {
        op->kind = OP_RESIDUAL;
        s = parse_residual(ld, json, in, &op->u.residual, &op->out);
    } else if (strcmp(kind, "global_avg_pool") == 0) {
        op->kind = OP_GLOBAL_AVG_POOL;
        op->out = (shape3){in.c, 1, 1};
    } else if (strcmp(kind, "linear") == 0) {
        op->kind = OP_LINEAR;
        if (!is_vector) return load_fail(ld, "linear needs a vector input, got %dx%dx%d", in.c, in.h, in.w);
        int out;
        if (!(s = parse_dense(ld, json, in.c, &out, &op->u.linear))) op->out = (shape3){out, 1, 1};
    } else if (strcmp(kind, "relu") == 0) {
        op->kind = OP_RELU;
    } else if (strcmp(kind, "upsample") == 0) {
        op->kind = OP_UPSAMPLE;
        if ((s = json_int(ld, json, "scale", 1, 16, &op->scale))) return s;
        if (!op_set_input(op, in, in)) return load_fail(ld, "upsampling %dx%d by %d is too large", in.h, in.w, op->scale);
    } else if (strcmp(kind, "add") == 0) {
        op->kind = OP_ADD;
        if (!op_set_input(op, in, with)) return add_mismatch(ld, ld->model->ops, op, "");
    } else if (strcmp(kind, "softmax") == 0) {
        op->kind = OP_SOFTMAX;
        if (!is_vector) return load_fail(ld, "softmax needs a vector input, got %dx%dx%d", in.c, in.h, in.w);
    } else {
        return load_fail(ld, "unknown op '%s'", kind);
    }
    if (s) return s;
    if (ld->model->num_outputs > 0) {
        if (op->kind != OP_CONV2D && op->kind != OP_MAXPOOL && op->kind != OP_RELU && op->kind != OP_UPSAMPLE &&
            op->kind != OP_ADD) {
            free_op(op);
            return load_fail(ld, "a multi-output graph may hold only conv2d, maxpool, relu, upsample and add ops");
        }
    } else if (last != (op->kind == OP_SOFTMAX)) {
        free_op(op);
        return load_fail(ld, "the graph must end with exactly one softmax, as its last op");
    }
    describe_op(op);
    return EMOTE_OK;
}

/* ---- metadata ------------------------------------------------------------ */

/* Parses metadata string `key` as JSON of the given type; the caller deletes it. */
static emote_status metadata_json(loader *ld, const char *key, int cjson_type, cJSON **out) {
    const char *text = st_metadata(ld->file, key);
    if (!text) return load_fail(ld, "__metadata__ has no \"%s\" (is this an emote model file?)", key);
    *out = cJSON_Parse(text);
    if (!*out || ((*out)->type & 0xFF) != cjson_type) {
        cJSON_Delete(*out);
        *out = NULL;
        return load_fail(ld, "__metadata__ \"%s\" is not a valid JSON %s", key, cjson_type == cJSON_Array ? "array" : "object");
    }
    return EMOTE_OK;
}

/* What makes a label unusable (it becomes a folder name, a csv/tsv header and JSON text
 * written without escaping), or NULL. */
const char *model_label_problem(const char *label) {
    if (!label || !label[0]) return "must be a non-empty string";
    if (strpbrk(label, "/,\"\\")) return "contains '/', a comma, a quote or a backslash";
    const unsigned char *p = (const unsigned char *)label;
    uint32_t cp;
    for (size_t n; *p; p += n) {
        if (!(n = utf8_sequence(p, &cp))) return "is not valid UTF-8";
        if (is_control_code_point(cp)) return "contains a control character";
    }
    return NULL;
}

static emote_status load_labels(loader *ld, emote_model *m) {
    cJSON *labels;
    emote_status s = metadata_json(ld, "labels", cJSON_Array, &labels);
    if (s) return s;
    int n = cJSON_GetArraySize(labels);
    if (n < 1 || n > 100000) {
        cJSON_Delete(labels);
        return load_fail(ld, "\"labels\" must list 1 to 100000 class names");
    }
    if (!(m->labels = calloc_array((size_t)n, sizeof(char *)))) {
        cJSON_Delete(labels);
        return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, labels) {
        const char *problem = model_label_problem(cJSON_IsString(item) ? item->valuestring : NULL);
        if (problem) {
            s = load_fail(ld, "label %d %s", m->num_classes, problem);
            break;
        }
        if (!(m->labels[m->num_classes++] = str_dup(item->valuestring))) {
            s = emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
            break;
        }
    }
    cJSON_Delete(labels);
    return s;
}

/* Per-channel mean or std, checked as the floats they become: finite, |mean| <= MAX_INPUT_MEAN,
 * std in [MIN_INPUT_STD, MAX_INPUT_STD]. */
static emote_status load_channel_values(loader *ld, const cJSON *input, const char *key, int channels, float *out,
                                        bool is_std) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(input, key);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != channels)
        return load_fail(ld, "input \"%s\" must list one number per channel (%d)", key, channels);
    double min = is_std ? MIN_INPUT_STD : -MAX_INPUT_MEAN, max = is_std ? MAX_INPUT_STD : MAX_INPUT_MEAN;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!(d >= min && d <= max)) /* before the conversion to float: it cannot overflow */
            return load_fail(ld, "input \"%s\"[%d] must be a number in [%g, %g]", key, i, min, max);
        out[i] = (float)d;
        if (!(out[i] >= min)) /* a double just above the minimum may round below it */
            return load_fail(ld, "input \"%s\"[%d] must be a number in [%g, %g]", key, i, min, max);
        i++;
    }
    return EMOTE_OK;
}

static emote_status load_input_spec(loader *ld, emote_input_spec *spec) {
    cJSON *input;
    emote_status s = metadata_json(ld, "input", cJSON_Object, &input);
    if (s) return s;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(input, "preprocess");
    if ((s = json_int(ld, input, "channels", 1, 3, &spec->channels)) ||
        (s = json_int(ld, input, "height", 1, MAX_DIMENSION, &spec->height)) ||
        (s = json_int(ld, input, "width", 1, MAX_DIMENSION, &spec->width)))
        goto done;
    if (spec->channels == 2) {
        s = load_fail(ld, "input \"channels\" must be 1 (grayscale) or 3 (RGB)");
        goto done;
    }
    if (!cJSON_IsString(pre) || strcmp(pre->valuestring, PREPROCESS_VERSION) != 0) {
        s = load_fail(ld, "input \"preprocess\" must be \"%s\"", PREPROCESS_VERSION);
        goto done;
    }
    if ((s = load_channel_values(ld, input, "mean", spec->channels, spec->mean, false))) goto done;
    s = load_channel_values(ld, input, "std", spec->channels, spec->std, true);
done:
    cJSON_Delete(input);
    return s;
}

/* An op's "input" or "with": the earlier op whose output it names (via "name"). */
static emote_status value_ref(loader *ld, const cJSON *item, const char *key, const string_table *names, int *op) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    if (!cJSON_IsString(v)) return load_fail(ld, "'%s' must name an earlier op's output", key);
    if ((*op = table_find(names, v->valuestring)) < 0)
        return load_fail(ld, "'%s' names '%s', which no earlier op is named", key, v->valuestring);
    return EMOTE_OK;
}

/* Where op `index` reads from: "input" and "with" (an add's second operand), and its "name".
 * Only multi-output graphs route values; a classifier's graph is a plain chain. */
static emote_status route_op(loader *ld, const cJSON *item, int index, string_table *names, graph_op *op) {
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(item, "input");
    const cJSON *with = cJSON_GetObjectItemCaseSensitive(item, "with");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "op");
    bool is_add = cJSON_IsString(kind) && strcmp(kind->valuestring, "add") == 0;
    op->input_op = index - 1;
    op->with_op = -1;
    if ((input || with || name || is_add) && ld->model->num_outputs == 0)
        return load_fail(ld, "'input', 'with', 'name' and add ops need a multi-output model (metadata \"outputs\")");
    emote_status s = EMOTE_OK;
    if (input && (s = value_ref(ld, item, "input", names, &op->input_op))) return s;
    if (is_add && (s = value_ref(ld, item, "with", names, &op->with_op))) return s;
    if (with && !is_add) return load_fail(ld, "only an add takes 'with'");
    if (name) {
        if (!cJSON_IsString(name) || !name->valuestring[0]) return load_fail(ld, "'name' must be a non-empty string");
        int got = table_add(names, name->valuestring, index);
        if (got < 0) return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
        if (got != index) return load_fail(ld, "the name '%s' is already op %d's", name->valuestring, got);
    }
    return EMOTE_OK;
}

static shape3 op_output_shape(const emote_model *m, int op) {
    return op < 0 ? (shape3){m->input.channels, m->input.height, m->input.width} : m->ops[op].out;
}

static emote_status resolve_outputs(loader *ld, emote_model *m, const string_table *names) {
    for (int i = 0; i < m->num_outputs; i++)
        if ((m->output_ops[i] = table_find(names, m->output_names[i])) < 0)
            return load_fail(ld, "output '%s' is not the name of any graph op", m->output_names[i]);
    return EMOTE_OK;
}

/* input "size_multiple": a multi-output model runs at any height and width that are
 * multiples of it (height and width are then a nominal size, for checks and FLOPs). */
static emote_status load_size_multiple(loader *ld, emote_model *m) {
    cJSON *input;
    emote_status s = metadata_json(ld, "input", cJSON_Object, &input);
    if (s) return s;
    if (cJSON_GetObjectItemCaseSensitive(input, "size_multiple")) {
        if (m->num_outputs == 0)
            s = load_fail(ld, "input \"size_multiple\" needs a multi-output model (metadata \"outputs\")");
        else if (!(s = json_int(ld, input, "size_multiple", 1, 1024, &m->size_multiple)) &&
                 (m->input.height % m->size_multiple || m->input.width % m->size_multiple))
            s = load_fail(ld, "input height and width must be multiples of \"size_multiple\" (%d)", m->size_multiple);
    }
    cJSON_Delete(input);
    return s;
}

static emote_status load_graph(loader *ld, emote_model *m) {
    cJSON *graph;
    emote_status s = metadata_json(ld, "graph", cJSON_Array, &graph);
    if (s) return s;
    int n = cJSON_GetArraySize(graph);
    if (n < 1 || n > MAX_OPS) {
        cJSON_Delete(graph);
        return load_fail(ld, "\"graph\" must hold 1 to %d ops", MAX_OPS);
    }
    if (!(m->ops = calloc_array((size_t)n, sizeof(graph_op)))) {
        cJSON_Delete(graph);
        return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    }
    string_table names = {0};
    const cJSON *item;
    cJSON_ArrayForEach(item, graph) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "op");
        graph_op *op = &m->ops[m->num_ops];
        snprintf(ld->where, sizeof ld->where, "graph op %d (%s)", m->num_ops,
                 cJSON_IsString(kind) ? kind->valuestring : "?");
        if ((s = route_op(ld, item, m->num_ops, &names, op))) break;
        shape3 in = op_output_shape(m, op->input_op), with = op->with_op >= 0 ? m->ops[op->with_op].out : in;
        if ((s = parse_op(ld, item, in, with, m->num_ops == n - 1, op))) break;
        m->macs += op_macs(op);
        m->num_ops++;
    }
    ld->where[0] = '\0';
    if (!s) s = resolve_outputs(ld, m, &names);
    table_free(&names);
    cJSON_Delete(graph);
    shape3 last = op_output_shape(m, m->num_ops - 1);
    if (!s && m->num_outputs == 0 && last.c != m->num_classes)
        s = load_fail(ld, "the graph ends with %d outputs but there are %d labels", last.c, m->num_classes);
    return s;
}

/* A size-free graph runs at every multiple of size_multiple up to GRAPH_MAX_SIDE, so its adds
 * must match at each (inputs too small for a kernel are refused when run). Heights and widths
 * flow through the ops independently: square inputs cover every shape. */
static emote_status check_every_size(loader *ld, const emote_model *m) {
    if (m->size_multiple == 0) return EMOTE_OK;
    graph_op *ops = malloc(sizeof(graph_op) * (size_t)m->num_ops);
    if (!ops) return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    memcpy(ops, m->ops, sizeof(graph_op) * (size_t)m->num_ops);
    emote_status s = EMOTE_OK;
    for (int side = m->size_multiple; !s && side <= GRAPH_MAX_SIDE; side += m->size_multiple) {
        int bad = graph_set_input(ops, m->num_ops, (shape3){m->input.channels, side, side});
        if (bad < 0 || ops[bad].kind != OP_ADD) continue;
        char when[128];
        snprintf(when, sizeof when, "at a %dx%d input (a multiple of \"size_multiple\" %d), graph op %d ", side, side,
                 m->size_multiple, bad);
        s = add_mismatch(ld, ops, &ops[bad], when);
    }
    free(ops);
    return s;
}

static bool listed_before(char *const *names, int count, const char *name) {
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

/* "outputs": the named values a multi-output model (a detector) returns; absent for a classifier. */
static emote_status load_output_names(loader *ld, emote_model *m) {
    if (!st_metadata(ld->file, "outputs")) return EMOTE_OK;
    cJSON *outputs;
    emote_status s = metadata_json(ld, "outputs", cJSON_Array, &outputs);
    if (s) return s;
    int n = cJSON_GetArraySize(outputs);
    if (n < 1 || n > MAX_OPS) {
        cJSON_Delete(outputs);
        return load_fail(ld, "\"outputs\" must list 1 to %d op names", MAX_OPS);
    }
    m->output_names = calloc_array((size_t)n, sizeof(char *));
    m->output_ops = calloc_array((size_t)n, sizeof(int));
    if (!m->output_names || !m->output_ops) s = emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    const cJSON *item;
    cJSON_ArrayForEach(item, outputs) {
        if (s) break;
        if (!cJSON_IsString(item) || !item->valuestring[0])
            s = load_fail(ld, "\"outputs\" must list op names (strings)");
        else if (listed_before(m->output_names, m->num_outputs, item->valuestring))
            s = load_fail(ld, "\"outputs\" lists '%s' twice", item->valuestring);
        else if (!(m->output_names[m->num_outputs++] = str_dup(item->valuestring)))
            s = emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    }
    cJSON_Delete(outputs);
    return s;
}

static emote_status copy_metadata(loader *ld, emote_model *m) {
    int n = ld->file->metadata ? cJSON_GetArraySize(ld->file->metadata) : 0;
    m->metadata_keys = calloc_array((size_t)n + 1, sizeof(char *));
    m->metadata_values = calloc_array((size_t)n + 1, sizeof(char *));
    if (!m->metadata_keys || !m->metadata_values)
        return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    const cJSON *item;
    cJSON_ArrayForEach(item, ld->file->metadata) {
        if (!cJSON_IsString(item)) return load_fail(ld, "__metadata__ \"%s\" is not a string", item->string);
        m->metadata_keys[m->num_metadata] = str_dup(item->string);
        m->metadata_values[m->num_metadata] = str_dup(item->valuestring);
        if (!m->metadata_keys[m->num_metadata++] || !m->metadata_values[m->num_metadata - 1])
            return emote_fail(ld->err, EMOTE_ERR_MEMORY, "%s: out of memory", ld->name);
    }
    return EMOTE_OK;
}

/* ---- public API ---------------------------------------------------------- */

/* Opens a model from a file's bytes. in_place: they outlive the model, so its tensors may
 * point into them rather than be copied. built_in: bytes compiled into this binary, from a
 * file that `make` checked by loading it (every check, the weights' values too) before
 * building it in; scanning 11 MB of weights again would cost a short process a millisecond. */
static emote_model *open_model(const unsigned char *data, size_t size, const char *name, bool in_place, bool built_in,
                               emote_error *err) {
    st_file file;
    if (st_parse(data, size, name, &file, err)) return NULL;
    emote_model *m = calloc(1, sizeof *m);
    size_t budget = size / 2 < (SIZE_MAX - MODEL_WEIGHT_SLACK_BYTES) / 4 ? 2 * size + MODEL_WEIGHT_SLACK_BYTES : SIZE_MAX;
    loader ld = {.file = &file, .name = name, .err = err, .model = m, .in_place = in_place, .values_checked = built_in,
                 .floats_left = budget / sizeof(float)};
    emote_status s = EMOTE_OK;
    if (!m || !(m->name = str_dup(name))) {
        s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
    } else {
        const char *format = st_metadata(&file, "format");
        if (!format || strcmp(format, MODEL_FORMAT) != 0)
            s = load_fail(&ld, "__metadata__ \"format\" must be \"%s\" (is this an emote model file?)", MODEL_FORMAT);
    }
    if (!s) s = copy_metadata(&ld, m);
    if (!s) s = load_output_names(&ld, m);
    if (!s && (m->num_outputs == 0 || st_metadata(&file, "labels"))) s = load_labels(&ld, m);
    if (!s) s = load_input_spec(&ld, &m->input);
    if (!s) s = load_size_multiple(&ld, m);
    if (!s) s = load_graph(&ld, m);
    if (!s) s = check_every_size(&ld, m);
    table_free(&ld.shared);
    free(ld.tensors);
    st_free(&file);
    if (s) {
        emote_model_close(m);
        return NULL;
    }
    m->params = ld.params;
    m->derived_floats_max = ld.floats_left;
    m->source = data;
    m->source_size = size;
    return m;
}

/* The bytes are copied and kept, as emote_model_open keeps a file's: the model's tensors
 * use them in place, and emote_model_write_head copies the base from them. */
emote_model *emote_model_open_memory(const void *data, size_t size, const char *name, emote_error *err) {
    if (!name) name = "<memory>";
    if (!data) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: no model data (NULL)", name);
        return NULL;
    }
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) {
        emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
        return NULL;
    }
    if (size) memcpy(copy, data, size);
    emote_model *m = open_model(copy, size, name, true, false, err);
    if (m) m->file_data = copy;
    else free(copy);
    return m;
}

emote_model *emote_model_open(const char *path, emote_error *err) {
    if (!path) {
        emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_model_open: no path (NULL)");
        return NULL;
    }
    unsigned char *data;
    size_t size;
    if (read_file_all(path, MODEL_MAX_FILE_BYTES, &data, &size, err)) return NULL;
    emote_model *m = open_model(data, size, path, true, false, err);
    if (m) m->file_data = data; /* its tensors point into it */
    else free(data);
    return m;
}

const char *emote_builtin_model_name(int index) {
    for (int i = 0; emote_builtin_models[i].name; i++)
        if (i == index) return emote_builtin_models[i].name;
    return NULL;
}

emote_model *emote_model_open_builtin_named(const char *name, emote_error *err) {
    const builtin_model *found = NULL;
    for (const builtin_model *b = emote_builtin_models; b->name && !found; b++)
        if (!name || strcmp(name, b->name) == 0) found = b;
    if (!found) {
        if (!name)
            emote_fail(err, EMOTE_ERR_ARGUMENT, "this build of emote has no built-in model: give one with -m FILE");
        else
            emote_fail(err, EMOTE_ERR_ARGUMENT, "no built-in model named '%s'", name);
        return NULL;
    }
    char label[64];
    snprintf(label, sizeof label, "built-in %s", found->name);
    return open_model(found->data, found->size, label, true, true, err);
}

emote_model *emote_model_open_builtin(emote_error *err) { return emote_model_open_builtin_named(NULL, err); }

emote_model *emote_model_open_any(const char *name_or_path, emote_error *err) {
    if (!name_or_path || !*name_or_path) return emote_model_open_builtin(err);
    for (int i = 0; emote_builtin_model_name(i); i++)
        if (strcmp(name_or_path, emote_builtin_model_name(i)) == 0) return emote_model_open_builtin_named(name_or_path, err);
    return emote_model_open(name_or_path, err);
}

void emote_model_close(emote_model *m) {
    if (!m) return;
    net_cache_free(m->net_cache);
    model_free_conv_weights(m);
    for (int i = 0; i < m->num_ops; i++) free_op(&m->ops[i]);
    free(m->ops);
    for (int i = 0; i < m->num_weights; i++) free(m->weights[i]);
    free(m->weights);
    free(m->file_data);
    for (int i = 0; i < m->num_classes; i++) free(m->labels[i]);
    free(m->labels);
    for (int i = 0; i < m->num_metadata; i++) {
        free(m->metadata_keys[i]);
        free(m->metadata_values[i]);
    }
    free(m->metadata_keys);
    free(m->metadata_values);
    for (int i = 0; i < m->num_outputs; i++) free(m->output_names[i]);
    free(m->output_names);
    free(m->output_ops);
    free(m->name);
    free(m);
}

/* The accessors answer NULL or 0 for a NULL model. */
const char *emote_model_name(const emote_model *m) { return m ? m->name : NULL; }
int emote_model_num_classes(const emote_model *m) { return m ? m->num_classes : 0; }
const char *emote_model_label(const emote_model *m, int i) {
    return m && i >= 0 && i < m->num_classes ? m->labels[i] : NULL;
}
const emote_input_spec *emote_model_input(const emote_model *m) { return m ? &m->input : NULL; }
size_t emote_input_floats(const emote_model *m) {
    return m ? (size_t)m->input.channels * (size_t)m->input.height * (size_t)m->input.width : 0;
}
uint64_t emote_model_param_count(const emote_model *m) { return m ? m->params : 0; }
uint64_t emote_model_macs(const emote_model *m) { return m ? m->macs : 0; }
int emote_model_num_ops(const emote_model *m) { return m ? m->num_ops : 0; }
const char *emote_model_op_kind(const emote_model *m, int op) {
    return m && op >= 0 && op < m->num_ops ? m->ops[op].description : NULL;
}

int model_head_op(const emote_model *m) {
    int n = m->num_ops;
    if (m->num_outputs > 0 || n < 2 || m->ops[n - 1].kind != OP_SOFTMAX || m->ops[n - 2].kind != OP_LINEAR) return -1;
    return n - 2;
}

int emote_model_feature_size(const emote_model *m) {
    int head = model_head_op(m);
    return head < 0 ? 0 : m->ops[head].in.c;
}

const char *emote_model_metadata(const emote_model *m, const char *key) {
    for (int i = 0; m && key && i < m->num_metadata; i++)
        if (strcmp(m->metadata_keys[i], key) == 0) return m->metadata_values[i];
    return NULL;
}
