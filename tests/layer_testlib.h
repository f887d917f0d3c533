/* Helpers shared by the layer tests (test_winograd.c, test_packed_gemm.c). */
#ifndef EMOTE_LAYER_TESTLIB_H
#define EMOTE_LAYER_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "layers/layers.h"

/* count floats uniform in [-1, 1) from a xorshift64 state (malloc'd). */
float *random_floats(size_t count, uint64_t *state);
/* conv_forward of c on n CNHW images, with the scratch it asks for; the output, malloc'd. */
float *run_conv_layer(const conv_layer *c, const float *in, int n, thread_pool *pool);

#endif
