#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t read_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer exactly representable (< 2^53). */
static int json_to_size(const cJSON *item, size_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v < 9007199254740992.0) || v != (double)(uint64_t)v) return 0;
    if ((uint64_t)v > SIZE_MAX) return 0;
    *out = (size_t)v;
    return 1;
}

static emote_status parse_tensor(const cJSON *entry, size_t data_size, const unsigned char *data,
                                 const char *name, st_tensor *t, emote_error *err) {
    const char *tn = entry->string;
    if (!cJSON_IsObject(entry))
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", name, tn);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype))
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': missing dtype", name, tn);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': dtype %s is not supported (only F32)", name, tn,
                          dtype->valuestring);
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > ST_MAX_DIMS)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': shape must be an array of at most %d sizes", name,
                          tn, ST_MAX_DIMS);
    t->ndim = 0;
    t->numel = 1;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        size_t d;
        if (!json_to_size(dim, &d) || !size_mul(t->numel, d, &t->numel))
            return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': bad or overflowing shape", name, tn);
        t->shape[t->ndim++] = d;
    }
    size_t begin, end, bytes;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !json_to_size(cJSON_GetArrayItem(offsets, 0), &begin) || !json_to_size(cJSON_GetArrayItem(offsets, 1), &end))
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", name, tn);
    if (begin > end || end > data_size)
        return emote_fail(err, EMOTE_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu] lie outside the %zu-byte data section "
                          "(truncated file?)", name, tn, begin, end, data_size);
    if (!size_mul(t->numel, sizeof(float), &bytes) || bytes != end - begin)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s': %zu bytes of data do not match its shape (%zu floats)",
                          name, tn, end - begin, t->numel);
    t->data = data + begin;
    t->name = str_dup(tn);
    if (!t->name) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
    return EMOTE_OK;
}

emote_status st_parse(const unsigned char *data, size_t size, const char *name, st_file *file,
                      emote_error *err) {
    memset(file, 0, sizeof *file);
    if (size < 8)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", name, size);
    uint64_t header_len = read_u64_le(data);
    if (header_len > size - 8)
        return emote_fail(err, EMOTE_ERR_FORMAT,
                          "%s: header length %llu runs past the end of the %zu-byte file (truncated or not safetensors)",
                          name, (unsigned long long)header_len, size);
    if (header_len > ST_MAX_HEADER_BYTES)
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: header of %llu bytes is larger than the limit of %u", name,
                          (unsigned long long)header_len, ST_MAX_HEADER_BYTES);
    const char *json = (const char *)data + 8;
    file->header = cJSON_ParseWithLength(json, (size_t)header_len);
    if (!file->header || !cJSON_IsObject(file->header)) {
        const char *where = cJSON_GetErrorPtr();
        size_t at = where && where >= json && where <= json + header_len ? (size_t)(where - json) : 0;
        st_free(file);
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: header is not a valid JSON object (error near byte %zu)", name,
                          at);
    }
    const unsigned char *tensor_data = data + 8 + header_len;
    size_t data_size = size - 8 - (size_t)header_len;
    size_t n = (size_t)cJSON_GetArraySize(file->header);
    if (n > ST_MAX_TENSORS + 1) { /* + __metadata__ */
        st_free(file);
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %zu header entries, more than the limit of %d tensors", name, n,
                          ST_MAX_TENSORS);
    }
    file->tensors = calloc_array(n ? n : 1, sizeof(st_tensor));
    if (!file->tensors) {
        st_free(file);
        return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
    }
    const cJSON *entry;
    cJSON_ArrayForEach(entry, file->header) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(entry)) {
                st_free(file);
                return emote_fail(err, EMOTE_ERR_FORMAT, "%s: __metadata__ is not an object", name);
            }
            file->metadata = entry;
            continue;
        }
        st_tensor *t = &file->tensors[file->count];
        emote_status s = parse_tensor(entry, data_size, tensor_data, name, t, err);
        if (s != EMOTE_OK) {
            st_free(file);
            return s;
        }
        file->count++;
        int index = table_add(&file->by_name, t->name, (int)(file->count - 1));
        if (index < 0 || index != (int)(file->count - 1)) {
            s = index < 0 ? emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name)
                          : emote_fail(err, EMOTE_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", name,
                                       t->name);
            st_free(file);
            return s;
        }
    }
    return EMOTE_OK;
}

void st_free(st_file *file) {
    table_free(&file->by_name);
    for (size_t i = 0; i < file->count; i++) free(file->tensors[i].name);
    free(file->tensors);
    cJSON_Delete(file->header);
    memset(file, 0, sizeof *file);
}

const st_tensor *st_find(const st_file *file, const char *name) {
    int i = table_find(&file->by_name, name);
    return i < 0 ? NULL : &file->tensors[i];
}

const char *st_metadata(const st_file *file, const char *key) {
    const cJSON *v = file->metadata ? cJSON_GetObjectItemCaseSensitive(file->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void st_read_floats(const st_tensor *tensor, float *dst) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, tensor->data, tensor->numel * sizeof(float)); /* the file's byte order is ours */
    return;
#endif
    for (size_t i = 0; i < tensor->numel; i++) {
        const unsigned char *p = tensor->data + 4 * i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}
