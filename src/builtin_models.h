/* The model files compiled into the binary: a table the Makefile generates from
 * src/embed_models.sh (one entry per NAME=FILE in BUILTIN_MODELS whose file exists, the
 * default first), ended by an entry with name NULL. src/no_builtin_model.c gives an empty
 * table to builds without any (libemote.a). */
#ifndef EMOTE_BUILTIN_MODELS_H
#define EMOTE_BUILTIN_MODELS_H

#include <stddef.h>

typedef struct {
    const char *name;
    const unsigned char *data;
    size_t size;
} builtin_model;

extern const builtin_model emote_builtin_models[];

#endif
