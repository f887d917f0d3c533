/* Linked instead of builtin_model.S when the build has no model file. */
#include <stddef.h>

const unsigned char emote_builtin_model_data[1] = {0};
const size_t emote_builtin_model_size = 0;
