/* libFuzzer target: a model file from memory (safetensors header, metadata, graph, weights). */
#include <stddef.h>
#include <stdint.h>

#include "emote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    emote_error err;
    emote_model *m = emote_model_open_memory(data, size, "fuzz", &err);
    emote_model_close(m);
    return 0;
}
