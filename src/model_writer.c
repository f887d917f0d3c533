/* Writing a model file: a base model's graph and weights with a new head (the last dense
 * layer) and labels. The base's tensors are copied byte for byte from the file it was read
 * from (BatchNorm statistics and all), so the result is as auditable as the base. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "atomic_file.h"
#include "graph.h"
#include "safetensors.h"
#include "sha256.h"
#include "util.h"

/* The metadata a head may not set: what the writer derives itself or copies from the base. */
static const char *const derived_keys[] = {"format", "labels", "graph", "input", NULL};

typedef struct {
    const emote_model *base;
    const emote_head *head;
    int features;      /* inputs of the head */
    char *weight_name; /* the head's tensors in the file (owned) */
    char *bias_name;
    emote_error *err;
} writer;

static bool is_derived_key(const char *key) {
    for (int i = 0; derived_keys[i]; i++)
        if (!strcmp(derived_keys[i], key)) return true;
    return false;
}

static emote_status check_head(const writer *w) {
    const emote_head *h = w->head;
    const char *name = w->base->name;
    if (h->classes < 1 || h->classes > 100000 || !h->labels || !h->weight || !h->bias)
        return emote_fail(w->err, EMOTE_ERR_ARGUMENT, "%s: a new head needs 1 to 100000 classes, labels and weights",
                          name);
    for (int k = 0; k < h->classes; k++) {
        const char *problem = model_label_problem(h->labels[k]);
        if (problem)
            return emote_fail(w->err, EMOTE_ERR_ARGUMENT, "%s: new label %d ('%s') %s", name, k,
                              h->labels[k] ? h->labels[k] : "", problem);
        for (int j = 0; j < k; j++)
            if (!strcmp(h->labels[j], h->labels[k]))
                return emote_fail(w->err, EMOTE_ERR_ARGUMENT, "%s: new label '%s' is given twice", name, h->labels[k]);
    }
    if (!all_finite(h->weight, (size_t)h->classes * w->features) || !all_finite(h->bias, (size_t)h->classes))
        return emote_fail(w->err, EMOTE_ERR_ARGUMENT, "%s: the new head's weights are not all finite", name);
    for (int i = 0; i < h->num_metadata; i++)
        if (!h->metadata_keys[i] || is_derived_key(h->metadata_keys[i]))
            return emote_fail(w->err, EMOTE_ERR_ARGUMENT, "%s: metadata \"%s\" cannot be set for a new head", name,
                              h->metadata_keys[i] ? h->metadata_keys[i] : "(null)");
    return EMOTE_OK;
}

static emote_status out_of_memory(const writer *w) {
    return emote_fail(w->err, EMOTE_ERR_MEMORY, "%s: out of memory", w->base->name);
}

/* A name for the bias of a head that had none: beside its weight ("fc.weight" -> "fc.bias"),
 * not taken by another tensor. */
static char *new_bias_name(const st_file *file, const char *weight_name) {
    size_t stem = strlen(weight_name), cap = stem + 16;
    if (stem > 7 && !strcmp(weight_name + stem - 7, ".weight")) stem -= 7;
    char *name = malloc(cap);
    if (!name) return NULL;
    snprintf(name, cap, "%.*s.bias", (int)stem, weight_name);
    for (int n = 2; st_find(file, name); n++) snprintf(name, cap, "%.*s.bias%d", (int)stem, weight_name, n);
    return name;
}

/* Finds the head's tensor names in the graph; a head without bias gets one in the graph. */
static emote_status rewrite_graph(writer *w, const st_file *file, cJSON *graph) {
    cJSON *linear = cJSON_GetArrayItem(graph, cJSON_GetArraySize(graph) - 2);
    const cJSON *weight = cJSON_GetObjectItemCaseSensitive(linear, "weight");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(linear, "bias");
    if (!cJSON_IsString(weight))
        return emote_fail(w->err, EMOTE_ERR_FORMAT, "%s: its last dense layer names no weight", w->base->name);
    if (!(w->weight_name = str_dup(weight->valuestring))) return out_of_memory(w);
    if (cJSON_IsString(bias)) return (w->bias_name = str_dup(bias->valuestring)) ? EMOTE_OK : out_of_memory(w);
    if (!(w->bias_name = new_bias_name(file, w->weight_name))) return out_of_memory(w);
    cJSON_DeleteItemFromObjectCaseSensitive(linear, "bias");
    return cJSON_AddStringToObject(linear, "bias", w->bias_name) ? EMOTE_OK : out_of_memory(w);
}

static bool set_string(cJSON *object, const char *key, const char *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(object, key);
    return value == NULL || cJSON_AddStringToObject(object, key, value) != NULL;
}

/* Sets a metadata entry to the compact text of json (consumed). */
static bool set_json(cJSON *object, const char *key, cJSON *json) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    bool ok = text && set_string(object, key, text);
    free(text);
    cJSON_Delete(json);
    return ok;
}

/* "config" (the training tools' model description) keeps counting the classes right. */
static bool update_config(cJSON *metadata, int classes) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(metadata, "config");
    cJSON *config = cJSON_IsString(text) ? cJSON_Parse(text->valuestring) : NULL;
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(config, "num_classes"))) {
        cJSON_Delete(config);
        return true;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(config, "num_classes", cJSON_CreateNumber(classes));
    return set_json(metadata, "config", config);
}

static emote_status build_metadata(writer *w, const st_file *file, cJSON *metadata) {
    const emote_head *h = w->head;
    cJSON *graph = cJSON_Parse(st_metadata(file, "graph")); /* the loader read it: it parses */
    if (!graph) return out_of_memory(w);
    emote_status s = rewrite_graph(w, file, graph);
    if (s) {
        cJSON_Delete(graph);
        return s;
    }
    bool ok = set_json(metadata, "graph", graph) &&
              set_json(metadata, "labels", cJSON_CreateStringArray(h->labels, h->classes)) &&
              update_config(metadata, h->classes);
    for (int i = 0; ok && i < h->num_metadata; i++) ok = set_string(metadata, h->metadata_keys[i], h->metadata_values[i]);
    return ok ? EMOTE_OK : out_of_memory(w);
}

static bool add_tensor_entry(cJSON *header, const char *name, const size_t *shape, size_t ndim, size_t *offset) {
    cJSON *entry = cJSON_AddObjectToObject(header, name);
    cJSON *dims = entry ? cJSON_AddArrayToObject(entry, "shape") : NULL;
    cJSON *offsets = entry ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
    if (!dims || !offsets || !cJSON_AddStringToObject(entry, "dtype", "F32")) return false;
    size_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        cJSON_AddItemToArray(dims, cJSON_CreateNumber((double)shape[i]));
        numel *= shape[i];
    }
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)*offset));
    *offset += numel * sizeof(float);
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)*offset));
    return true;
}

static bool is_head_tensor(const writer *w, const char *name) {
    return !strcmp(name, w->weight_name) || !strcmp(name, w->bias_name);
}

static void put_floats_le(unsigned char *out, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        for (int b = 0; b < 4; b++) out[4 * i + b] = (unsigned char)(bits >> (8 * b));
    }
}

/* Header (padded with spaces to a multiple of 8, as the format's writers do), then the data. */
static emote_status assemble(const writer *w, const st_file *file, const cJSON *header, unsigned char **data,
                             size_t *size) {
    char *text = cJSON_PrintUnformatted(header);
    if (!text) return out_of_memory(w);
    size_t text_len = strlen(text), header_len = (text_len + 7) / 8 * 8, data_len = 0;
    for (size_t i = 0; i < file->count; i++)
        if (!is_head_tensor(w, file->tensors[i].name)) data_len += file->tensors[i].numel * sizeof(float);
    size_t head_floats = (size_t)w->head->classes * (w->features + 1);
    *size = 8 + header_len + data_len + head_floats * sizeof(float);
    unsigned char *out = *data = malloc(*size);
    if (!out) {
        free(text);
        return emote_fail(w->err, EMOTE_ERR_MEMORY, "%s: out of memory", w->base->name);
    }
    for (int b = 0; b < 8; b++) out[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
    memcpy(out + 8, text, text_len);
    memset(out + 8 + text_len, ' ', header_len - text_len);
    free(text);
    unsigned char *p = out + 8 + header_len;
    for (size_t i = 0; i < file->count; i++) {
        const st_tensor *t = &file->tensors[i];
        if (is_head_tensor(w, t->name)) continue;
        memcpy(p, t->data, t->numel * sizeof(float));
        p += t->numel * sizeof(float);
    }
    put_floats_le(p, w->head->weight, (size_t)w->head->classes * w->features);
    put_floats_le(p + (size_t)w->head->classes * w->features * sizeof(float), w->head->bias, (size_t)w->head->classes);
    return EMOTE_OK;
}

/* The new file's header: __metadata__, the base's tensors but the head's, then the new head. */
static emote_status build_header(writer *w, const st_file *file, cJSON *header) {
    cJSON *metadata = cJSON_AddObjectToObject(header, "__metadata__");
    if (!metadata) return out_of_memory(w);
    const cJSON *item;
    cJSON_ArrayForEach(item, file->metadata)
        if (cJSON_IsString(item) && !set_string(metadata, item->string, item->valuestring)) return out_of_memory(w);
    emote_status s = build_metadata(w, file, metadata);
    if (s) return s;
    size_t offset = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < file->count; i++)
        if (!is_head_tensor(w, file->tensors[i].name))
            ok = add_tensor_entry(header, file->tensors[i].name, file->tensors[i].shape, file->tensors[i].ndim, &offset);
    size_t weight_shape[2] = {(size_t)w->head->classes, (size_t)w->features}, bias_shape[1] = {(size_t)w->head->classes};
    ok = ok && add_tensor_entry(header, w->weight_name, weight_shape, 2, &offset) &&
         add_tensor_entry(header, w->bias_name, bias_shape, 1, &offset);
    return ok ? EMOTE_OK : out_of_memory(w);
}

emote_status emote_model_serialize_head(const emote_model *base, const emote_head *head, unsigned char **data,
                                        size_t *size, emote_error *err) {
    *data = NULL;
    *size = 0;
    writer w = {.base = base, .head = head, .features = emote_model_feature_size(base), .err = err};
    if (w.features == 0)
        return emote_fail(err, EMOTE_ERR_ARGUMENT,
                          "%s has no final dense layer (its graph does not end with linear + softmax)", base->name);
    if (!base->source) return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: its file's bytes were not kept", base->name);
    emote_status s = check_head(&w);
    if (s) return s;
    st_file file;
    if ((s = st_parse(base->source, base->source_size, base->name, &file, err))) return s;
    cJSON *header = cJSON_CreateObject();
    s = header ? build_header(&w, &file, header) : out_of_memory(&w);
    if (!s) s = assemble(&w, &file, header, data, size);
    cJSON_Delete(header);
    st_free(&file);
    free(w.weight_name);
    free(w.bias_name);
    if (s) {
        free(*data);
        *data = NULL;
    }
    return s;
}

emote_status emote_model_write_head(const emote_model *base, const emote_head *head, const char *path, int replace,
                                    emote_error *err) {
    unsigned char *data;
    size_t size;
    emote_status s = emote_model_serialize_head(base, head, &data, &size, err);
    if (s) return s;
    emote_model *check = emote_model_open_memory(data, size, path, err); /* every check of a model file */
    if (!check) s = EMOTE_ERR_FORMAT;
    emote_model_close(check);
    if (!s) s = write_file_atomically(path, data, size, replace != 0, err);
    free(data);
    return s;
}

void emote_model_sha256(const emote_model *model, char hex[65]) {
    sha256_hex(model->source ? model->source : (const unsigned char *)"", model->source ? model->source_size : 0, hex);
}
