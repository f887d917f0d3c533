/* Multi-output graphs (the face detector) on one image of any allowed size: see net.c. */
#ifndef EMOTE_NET_H
#define EMOTE_NET_H

#include "graph.h"

/* Called after each op with its output (CHW), for parity tests. */
typedef void (*net_trace_fn)(void *user, int op, const char *kind, const float *chw, int c, int h, int w);

/* emote_model_run with a trace callback (NULL: none). */
emote_status net_run(const emote_model *m, const float *input, int height, int width, emote_tensor *outputs,
                     net_trace_fn trace, void *user, emote_error *err);

/* The buffers a model keeps between runs (emote_model_close). */
struct net_cache;
void net_cache_free(struct net_cache *cache);

#endif
