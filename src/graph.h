/* The in-memory network: a validated op list; each conv's BatchNorm is a per-channel scale
 * and shift applied after its GEMM, so weights are used as the file has them.
 *
 * Activations inside a session use a channel-major batch layout, C x N x H x W
 * ("CNHW"): a conv is then one GEMM over all images, out[cout][n*oh*ow] =
 * W[cout][cin*kh*kw] x col[cin*kh*kw][n*oh*ow], with no transposes between layers.
 * Vectors (after global average pooling) are C x N. */
#ifndef EMOTE_GRAPH_H
#define EMOTE_GRAPH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emote.h"

typedef struct {
    int c, h, w; /* per image; h = w = 1 for vectors */
} shape3;

static inline size_t shape_size(shape3 s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }

typedef enum {
    OP_CONV2D,
    OP_MAXPOOL,
    OP_SQUEEZE_EXCITE,
    OP_RESIDUAL,
    OP_GLOBAL_AVG_POOL,
    OP_LINEAR,
    OP_RELU,
    OP_SOFTMAX,
    OP_UPSAMPLE, /* nearest neighbour, integer scale */
    OP_ADD,      /* elementwise: this op's input + the output of op `with_op` */
} op_kind;

typedef struct {
    int cin, cout, kh, kw, stride, padding;
    int groups; /* 1, or cin == cout for a depthwise conv (src/layers/depthwise.c) */
    bool relu;
    shape3 in, out;
    const float *weight; /* [cout][cin/groups*kh*kw], as in the file */
    const float *scale;  /* [cout] BatchNorm gain applied after the GEMM, or NULL */
    const float *bias;   /* [cout] added after the GEMM: conv bias and BatchNorm shift */
    /* 16 x packed [cout][cin]: the weights transformed for Winograd F(2x2, 3x3), owned by the
     * model (src/conv_weights.c, src/layers/winograd.c); NULL: the conv runs as im2col + GEMM */
    const float *winograd_weight;
    /* The weights packed for our own GEMM (src/layers/packed_gemm.c), where the conv runs so
     * (conv_wants_packed); NULL: OpenBLAS */
    const float *packed_weight;
} conv_layer;

typedef struct {
    int kernel, stride, padding;
    shape3 in, out;
} maxpool_layer;

typedef struct {
    int in, out;
    const float *weight; /* [out][in] */
    const float *bias;   /* [out], or NULL */
} dense_layer;

typedef struct {
    dense_layer fc1, fc2; /* channels -> hidden -> channels */
} squeeze_excite_layer;

typedef struct {
    conv_layer *body; /* run in sequence */
    int num_body;
    conv_layer *shortcut; /* NULL: identity */
    bool relu;
} residual_layer;

/* Ops read the previous op's output, or a named one: multi-output graphs (with
 * "outputs" in the metadata, such as the face detector) name values and read them back
 * (see src/net.c). In a plain chain input_op is the previous op (-1: the graph input). */
typedef struct {
    op_kind kind;
    shape3 in, out;
    int input_op, with_op; /* with_op: OP_ADD's second operand */
    int scale;             /* OP_UPSAMPLE */
    char description[96];
    union {
        conv_layer conv;
        maxpool_layer pool;
        squeeze_excite_layer se;
        residual_layer residual;
        dense_layer linear;
    } u;
} graph_op;

struct emote_model {
    char *name;
    char **labels;
    int num_classes;
    emote_input_spec input;
    graph_op *ops;
    int num_ops;
    /* Multi-output models: named outputs (the ops that make them) and the input size rule:
     * any height and width that are multiples of size_multiple (0: only input.height x width). */
    char **output_names;
    int *output_ops;
    int num_outputs, size_multiple;
    uint64_t params, macs;
    char **metadata_keys, **metadata_values;
    int num_metadata;
    /* Layers' float arrays point into the model file's bytes (the built-in model, or
     * file_data read by emote_model_open) where they can, else into weight buffers made
     * at load (copies, BatchNorm scales and shifts, zero biases), owned here. */
    unsigned char *file_data;
    /* The whole model file as read (file_data, or a built-in model's bytes): what
     * emote_model_write_head copies the base graph and weights from. */
    const unsigned char *source;
    size_t source_size;
    float **weights;
    int num_weights, weights_capacity;
    /* Scratch buffers of multi-output runs, kept for the next run (src/net.c); taken and put
     * back atomically, so that the model stays usable from many threads. */
    struct net_cache *_Atomic net_cache;
    /* Conv weights derived for the fast paths (src/conv_weights.c), made once, at most
     * derived_floats_max of them (what is left of the load's weight budget: convs may share
     * one tensor thousands of times); a conv beyond runs on OpenBLAS */
    struct conv_weights *conv_weights;
    size_t derived_floats_max;
    _Atomic bool conv_weights_ready;
};

/* Gives every conv of the model its derived weights (Winograd, packed) if not yet done: their
 * addresses at once, their contents on a thread of their own where `background`, else before
 * it returns. model_wait_convs waits for the contents: before a model's first run. Both
 * thread-safe. */
emote_status model_start_convs(const emote_model *m, bool background, emote_error *err);
void model_wait_convs(const emote_model *m);
void model_free_conv_weights(emote_model *m);

const char *op_kind_name(op_kind kind);

/* Sets op's input shape (and `with`, the second operand of an add) and computes its output
 * shape; false when the input does not fit (a kernel larger than the padded input, shapes
 * that differ for an add). For the ops a size-free graph may hold: conv2d, maxpool, relu,
 * upsample, add. */
bool op_set_input(graph_op *op, shape3 in, shape3 with);

/* The largest height or width a size-free graph runs at (src/net.c). */
#define GRAPH_MAX_SIDE 8192

/* Sets the shapes of ops[0 .. num_ops) in order (op_set_input) for one image of shape
 * `input`: -1 when every op fits, else the index of the first op that does not. */
int graph_set_input(graph_op *ops, int num_ops, shape3 input);

/* Why `label` cannot be a class label (it becomes a folder name, a csv/tsv header and JSON
 * text written without escaping), or NULL when it can (src/model.c). */
const char *model_label_problem(const char *label);

/* The op holding a classifier's head: its last dense layer, right before the softmax; -1
 * when the graph does not end with linear + softmax (src/model.c). */
int model_head_op(const emote_model *m);

#endif
