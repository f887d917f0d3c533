#include "string_table.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

uint64_t hash_bytes(uint64_t h, const void *data, size_t size) {
    for (const unsigned char *p = data; size--; p++) h = (h ^ *p) * 1099511628211u;
    return h;
}

uint64_t hash_string(const char *s) { return hash_bytes(HASH_SEED, s, strlen(s)); }

static size_t table_slot(const string_table *t, const char *key) {
    size_t mask = t->capacity - 1, i = (size_t)hash_string(key) & mask;
    while (t->keys[i] && strcmp(t->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

void table_free(string_table *t) {
    free(t->keys);
    free(t->values);
    memset(t, 0, sizeof *t);
}

int table_find(const string_table *t, const char *key) {
    if (t->capacity == 0) return -1;
    size_t i = table_slot(t, key);
    return t->keys[i] ? t->values[i] : -1;
}

static bool table_grow(string_table *t) {
    size_t capacity = t->capacity ? t->capacity * 2 : 64;
    string_table bigger = {calloc_array(capacity, sizeof(char *)), calloc_array(capacity, sizeof(int)), capacity,
                           t->count};
    if (!bigger.keys || !bigger.values || capacity < t->capacity) {
        table_free(&bigger);
        return false;
    }
    for (size_t i = 0; i < t->capacity; i++) {
        if (!t->keys[i]) continue;
        size_t j = table_slot(&bigger, t->keys[i]);
        bigger.keys[j] = t->keys[i];
        bigger.values[j] = t->values[i];
    }
    table_free(t);
    *t = bigger;
    return true;
}

int table_add(string_table *t, const char *key, int value) {
    if ((t->count + 1) * 2 > t->capacity && !table_grow(t)) return -1;
    size_t i = table_slot(t, key);
    if (!t->keys[i]) {
        t->keys[i] = key;
        t->values[i] = value;
        t->count++;
    }
    return t->values[i];
}
