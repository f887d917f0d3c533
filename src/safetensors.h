/* A validating reader for the safetensors format (F32 tensors only).
 * Layout: u64 little-endian header length N, N bytes of JSON, then tensor data. */
#ifndef EMOTE_SAFETENSORS_H
#define EMOTE_SAFETENSORS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "emote.h"
#include "string_table.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER_BYTES (64u * 1024u * 1024u)
#define ST_MAX_TENSORS 1000000

typedef struct {
    char *name;
    size_t ndim;
    size_t shape[ST_MAX_DIMS];
    size_t numel;
    const unsigned char *data; /* numel little-endian floats, possibly unaligned; points into the file buffer */
} st_tensor;

typedef struct {
    st_tensor *tensors;
    size_t count;
    string_table by_name;  /* tensor name -> index in tensors */
    cJSON *header;         /* the parsed JSON header; owns the metadata strings */
    const cJSON *metadata; /* "__metadata__" object inside header, or NULL */
} st_file;

/* Parses and checks the header of `data` (which must outlive the result): header length
 * vs size, JSON, dtypes, shapes and offsets (overflow-checked, inside the data section). */
emote_status st_parse(const unsigned char *data, size_t size, const char *name, st_file *file,
                      emote_error *err);
void st_free(st_file *file);

/* The tensor called name (a hash lookup), or NULL. */
const st_tensor *st_find(const st_file *file, const char *name);
/* A string value from __metadata__, or NULL. */
const char *st_metadata(const st_file *file, const char *key);
/* Copies a tensor's data into dst (numel floats), converting from little-endian. */
void st_read_floats(const st_tensor *tensor, float *dst);

#endif
