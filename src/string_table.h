/* An open-addressing hash table from strings to non-negative ints. Keys are not copied:
 * they must outlive the table. */
#ifndef EMOTE_STRING_TABLE_H
#define EMOTE_STRING_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char **keys;
    int *values;
    size_t capacity, count; /* capacity: 0 or a power of two, kept at most half full */
} string_table;

/* FNV-1a, 64-bit: hash_bytes continues h (start from HASH_SEED) over size bytes. */
#define HASH_SEED UINT64_C(14695981039346656037)
uint64_t hash_bytes(uint64_t h, const void *data, size_t size);
uint64_t hash_string(const char *s);

/* The value stored for key, or -1. */
int table_find(const string_table *t, const char *key);
/* Stores key -> value unless key is already there; returns the value stored for key,
 * or -1 when out of memory. */
int table_add(string_table *t, const char *key, int value);
void table_free(string_table *t);

#endif
