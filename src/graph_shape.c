/* Shape inference, shared by the model loader (at the file's nominal input size, and for a
 * size-free graph at every size it admits) and src/net.c (for the size it runs at). */
#include "graph.h"

#define MAX_SIDE 65536

static bool conv_set_input(conv_layer *c, shape3 in) {
    if (in.c != c->cin || in.h + 2 * c->padding < c->kh || in.w + 2 * c->padding < c->kw) return false;
    c->in = in;
    c->out = (shape3){c->cout, (in.h + 2 * c->padding - c->kh) / c->stride + 1,
                      (in.w + 2 * c->padding - c->kw) / c->stride + 1};
    return true;
}

static bool pool_set_input(maxpool_layer *p, shape3 in) {
    if (in.h + 2 * p->padding < p->kernel || in.w + 2 * p->padding < p->kernel) return false;
    p->in = in;
    p->out = (shape3){in.c, (in.h + 2 * p->padding - p->kernel) / p->stride + 1,
                      (in.w + 2 * p->padding - p->kernel) / p->stride + 1};
    return true;
}

bool op_set_input(graph_op *op, shape3 in, shape3 with) {
    op->in = op->out = in;
    switch (op->kind) {
    case OP_CONV2D:
        if (!conv_set_input(&op->u.conv, in)) return false;
        op->out = op->u.conv.out;
        return true;
    case OP_MAXPOOL:
        if (!pool_set_input(&op->u.pool, in)) return false;
        op->out = op->u.pool.out;
        return true;
    case OP_RELU: return true;
    case OP_UPSAMPLE:
        if (in.h > MAX_SIDE / op->scale || in.w > MAX_SIDE / op->scale) return false;
        op->out = (shape3){in.c, in.h * op->scale, in.w * op->scale};
        return true;
    case OP_ADD: return in.c == with.c && in.h == with.h && in.w == with.w;
    default: return false;
    }
}

int graph_set_input(graph_op *ops, int num_ops, shape3 input) {
    for (int i = 0; i < num_ops; i++) {
        graph_op *op = &ops[i];
        shape3 in = op->input_op < 0 ? input : ops[op->input_op].out;
        if (!op_set_input(op, in, op->with_op < 0 ? in : ops[op->with_op].out)) return i;
    }
    return -1;
}
