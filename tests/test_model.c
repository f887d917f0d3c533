/* Model loading: a good file loads; each kind of damaged file is refused with one clear
 * message naming the file and the problem. Damaged copies are made in memory from a fixture. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "safetensors.h"
#include "util.h"

#define GOOD_MODEL "tests/fixtures/emotenet_small.safetensors"

typedef struct {
    unsigned char *bytes;
    size_t size;
} blob;

static blob read_fixture(void) {
    blob b = {NULL, 0};
    emote_error err;
    if (read_file_all(GOOD_MODEL, (size_t)1 << 30, &b.bytes, &b.size, &err)) fprintf(stderr, "  %s\n", err.message);
    return b;
}

static uint64_t header_length(const blob *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b->bytes[i];
    return v;
}

/* A copy of b whose JSON header went through mutate(); the data section is unchanged. */
static blob with_header(const blob *b, void (*mutate)(cJSON *header)) {
    uint64_t n = header_length(b);
    cJSON *header = cJSON_ParseWithLength((const char *)b->bytes + 8, (size_t)n);
    mutate(header);
    char *json = cJSON_PrintUnformatted(header);
    size_t jn = strlen(json), data = b->size - 8 - (size_t)n;
    blob out = {malloc(8 + jn + data), 8 + jn + data};
    for (int i = 0; i < 8; i++) out.bytes[i] = (unsigned char)((uint64_t)jn >> (8 * i));
    memcpy(out.bytes + 8, json, jn);
    memcpy(out.bytes + 8 + jn, b->bytes + 8 + n, data);
    free(json);
    cJSON_Delete(header);
    return out;
}

/* Opens bytes as a model; checks it is refused with a message containing each of `expect`. */
static void expect_refused(int *failures, const char *what, const blob *b, const char *expect1, const char *expect2) {
    emote_error err = {{0}};
    emote_model *m = emote_model_open_memory(b->bytes, b->size, "damaged.safetensors", &err);
    CHECKF(m == NULL, "%s: a damaged model was accepted", what);
    emote_model_close(m);
    CHECKF(strstr(err.message, "damaged.safetensors") != NULL, "%s: message does not name the file: %s", what, err.message);
    CHECKF(strstr(err.message, expect1) != NULL, "%s: message lacks '%s': %s", what, expect1, err.message);
    if (expect2) CHECKF(strstr(err.message, expect2) != NULL, "%s: message lacks '%s': %s", what, expect2, err.message);
}

TEST(model_good_file_loads_with_its_metadata) {
    emote_error err;
    emote_model *m = emote_model_open(GOOD_MODEL, &err);
    CHECKF(m != NULL, "%s", err.message);
    if (!m) return;
    CHECK(emote_model_num_classes(m) == 7);
    CHECK(strcmp(emote_model_label(m, 0), "c0") == 0);
    CHECK(emote_model_label(m, 7) == NULL);
    CHECK(emote_model_input(m)->height == 24 && emote_model_input(m)->channels == 1);
    CHECK(emote_input_floats(m) == 24 * 24);
    CHECK(emote_model_param_count(m) > 0 && emote_model_macs(m) > 0);
    CHECK(strcmp(emote_model_metadata(m, "format"), "emote-model/1") == 0);
    CHECK(emote_model_metadata(m, "no such key") == NULL);
    emote_model_close(m);
}

TEST(model_missing_or_empty_file_is_refused) {
    emote_error err;
    CHECK(emote_model_open("tests/fixtures/no-such-model.safetensors", &err) == NULL);
    CHECK(strstr(err.message, "no-such-model.safetensors: cannot open") != NULL);
    blob empty = {(unsigned char *)"", 0};
    expect_refused(failures, "empty", &empty, "too short", NULL);
}

TEST(model_truncated_file_is_refused) {
    blob b = read_fixture();
    blob cut = {b.bytes, b.size / 2};
    expect_refused(failures, "truncated", &cut, "outside", "truncated");
    blob tiny = {b.bytes, 5};
    expect_refused(failures, "5 bytes", &tiny, "too short", NULL);
    free(b.bytes);
}

TEST(model_header_length_past_the_end_is_refused) {
    blob b = read_fixture();
    uint64_t fake = b.size + 100;
    for (int i = 0; i < 8; i++) b.bytes[i] = (unsigned char)(fake >> (8 * i));
    expect_refused(failures, "header length", &b, "header length", "past the end");
    for (int i = 0; i < 8; i++) b.bytes[i] = 0xff;
    expect_refused(failures, "huge header length", &b, "header length", NULL);
    free(b.bytes);
}

TEST(model_bad_json_is_refused) {
    blob b = read_fixture();
    b.bytes[8] = 'x';
    expect_refused(failures, "bad json", &b, "not a valid JSON", NULL);
    free(b.bytes);
}

static void rename_fc_bias(cJSON *h) {
    cJSON *t = cJSON_DetachItemFromObject(h, "fc.bias");
    cJSON_AddItemToObject(h, "fc.bias.renamed", t);
}

static void transpose_se_fc1(cJSON *h) { /* [3, 12] -> [12, 3]: same byte count, wrong shape */
    cJSON *shape = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "se.fc1.weight"), "shape");
    double rows = cJSON_GetArrayItem(shape, 0)->valuedouble;
    cJSON_SetNumberValue(cJSON_GetArrayItem(shape, 0), cJSON_GetArrayItem(shape, 1)->valuedouble);
    cJSON_SetNumberValue(cJSON_GetArrayItem(shape, 1), rows);
}

static void make_f16(cJSON *h) {
    cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "fc.weight"), "dtype"), "F16");
}

static void huge_shape(cJSON *h) { /* element count overflows size_t */
    cJSON *shape = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "fc.weight"), "shape");
    cJSON_SetNumberValue(cJSON_GetArrayItem(shape, 0), 4294967296.0);
    cJSON_SetNumberValue(cJSON_GetArrayItem(shape, 1), 4294967296.0);
}

static void drop_graph(cJSON *h) {
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(h, "__metadata__"), "graph");
}

static void extra_label(cJSON *h) {
    cJSON *meta = cJSON_GetObjectItem(h, "__metadata__");
    cJSON_ReplaceItemInObject(meta, "labels", cJSON_CreateString("[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]"));
}

static void unknown_op(cJSON *h) {
    cJSON *meta = cJSON_GetObjectItem(h, "__metadata__");
    cJSON *graph = cJSON_Parse(cJSON_GetObjectItem(meta, "graph")->valuestring);
    cJSON_AddItemToArray(graph, cJSON_Parse("{\"op\":\"teleport\"}"));
    char *text = cJSON_PrintUnformatted(graph);
    cJSON_ReplaceItemInObject(meta, "graph", cJSON_CreateString(text));
    free(text);
    cJSON_Delete(graph);
}

TEST(model_missing_tensor_is_refused) {
    blob b = read_fixture();
    blob bad = with_header(&b, rename_fc_bias);
    expect_refused(failures, "missing tensor", &bad, "'fc.bias' is missing", NULL);
    free(bad.bytes);
    free(b.bytes);
}

TEST(model_wrong_shape_is_refused) {
    blob b = read_fixture();
    blob bad = with_header(&b, transpose_se_fc1);
    expect_refused(failures, "wrong shape", &bad, "'se.fc1.weight' has shape [12, 3], expected [12, 12]", NULL);
    free(bad.bytes);
    bad = with_header(&b, huge_shape);
    expect_refused(failures, "overflowing shape", &bad, "fc.weight", "shape");
    free(bad.bytes);
    bad = with_header(&b, make_f16);
    expect_refused(failures, "dtype", &bad, "dtype F16 is not supported", NULL);
    free(bad.bytes);
    free(b.bytes);
}

TEST(model_inconsistent_metadata_is_refused) {
    blob b = read_fixture();
    blob bad = with_header(&b, drop_graph);
    expect_refused(failures, "no graph", &bad, "no \"graph\"", NULL);
    free(bad.bytes);
    bad = with_header(&b, extra_label);
    expect_refused(failures, "labels vs logits", &bad, "7 outputs but there are 8 labels", NULL);
    free(bad.bytes);
    bad = with_header(&b, unknown_op);
    expect_refused(failures, "unknown op", &bad, "softmax", NULL);
    free(bad.bytes);
    free(b.bytes);
}

TEST(model_nan_weight_is_refused) {
    blob b = read_fixture();
    st_file f;
    emote_error err;
    CHECK(st_parse(b.bytes, b.size, "fixture", &f, &err) == EMOTE_OK);
    const st_tensor *t = st_find(&f, "fc.weight");
    CHECK(t != NULL);
    if (t) {
        const float nan = NAN;
        memcpy((unsigned char *)t->data + 4 * 3, &nan, sizeof nan);
        expect_refused(failures, "nan", &b, "'fc.weight' holds a non-finite value", NULL);
    }
    st_free(&f);
    free(b.bytes);
}
