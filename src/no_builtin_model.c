/* Linked instead of the generated built-in model table when the build embeds no model. */
#include "builtin_models.h"

const builtin_model emote_builtin_models[1] = {{NULL, NULL, 0}};
