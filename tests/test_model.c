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
/* Multi-output: conv "skip" 8x12x16, maxpool, conv "coarse" 8x6x8, upsample x2, add "skip", relu "fine". */
#define GOOD_NET "tests/fixtures/upsample_add_two_outputs.safetensors"

typedef struct {
    unsigned char *bytes;
    size_t size;
} blob;

static blob read_fixture(const char *path) {
    blob b = {NULL, 0};
    emote_error err;
    if (read_file_all(path, (size_t)1 << 30, &b.bytes, &b.size, &err)) fprintf(stderr, "  %s\n", err.message);
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
    blob b = read_fixture(GOOD_MODEL);
    blob cut = {b.bytes, b.size / 2};
    expect_refused(failures, "truncated", &cut, "outside", "truncated");
    blob tiny = {b.bytes, 5};
    expect_refused(failures, "5 bytes", &tiny, "too short", NULL);
    free(b.bytes);
}

TEST(model_header_length_past_the_end_is_refused) {
    blob b = read_fixture(GOOD_MODEL);
    uint64_t fake = b.size + 100;
    for (int i = 0; i < 8; i++) b.bytes[i] = (unsigned char)(fake >> (8 * i));
    expect_refused(failures, "header length", &b, "header length", "past the end");
    for (int i = 0; i < 8; i++) b.bytes[i] = 0xff;
    expect_refused(failures, "huge header length", &b, "header length", NULL);
    free(b.bytes);
}

TEST(model_bad_json_is_refused) {
    blob b = read_fixture(GOOD_MODEL);
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

/* Metadata values holding JSON ("graph", "input", "outputs"): parse, edit, store back. */
static void edit_metadata_json(cJSON *h, const char *key, void (*edit)(cJSON *value)) {
    cJSON *meta = cJSON_GetObjectItem(h, "__metadata__");
    cJSON *value = cJSON_Parse(cJSON_GetObjectItem(meta, key)->valuestring);
    edit(value);
    char *text = cJSON_PrintUnformatted(value);
    cJSON_ReplaceItemInObject(meta, key, cJSON_CreateString(text));
    free(text);
    cJSON_Delete(value);
}

static void add_teleport(cJSON *graph) { cJSON_AddItemToArray(graph, cJSON_Parse("{\"op\":\"teleport\"}")); }
static void unknown_op(cJSON *h) { edit_metadata_json(h, "graph", add_teleport); }

TEST(model_missing_tensor_is_refused) {
    blob b = read_fixture(GOOD_MODEL);
    blob bad = with_header(&b, rename_fc_bias);
    expect_refused(failures, "missing tensor", &bad, "'fc.bias' is missing", NULL);
    free(bad.bytes);
    free(b.bytes);
}

TEST(model_wrong_shape_is_refused) {
    blob b = read_fixture(GOOD_MODEL);
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
    blob b = read_fixture(GOOD_MODEL);
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
    blob b = read_fixture(GOOD_MODEL);
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

/* ---- multi-output graphs ----------------------------------------------------------- */

static void second_output_nowhere(cJSON *outputs) {
    cJSON_ReplaceItemInArray(outputs, 1, cJSON_CreateString("nowhere"));
}
static void second_output_fine(cJSON *outputs) { cJSON_ReplaceItemInArray(outputs, 1, cJSON_CreateString("fine")); }
static void add_with_coarse(cJSON *graph) {
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(graph, 4), "with", cJSON_CreateString("coarse"));
}
static void upsample_by_4(cJSON *graph) {
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(graph, 3), "scale", cJSON_CreateNumber(4));
}
static void multiple_of_1(cJSON *input) { cJSON_AddNumberToObject(input, "size_multiple", 1); }
static void multiple_of_2(cJSON *input) { cJSON_AddNumberToObject(input, "size_multiple", 2); }

static void output_nowhere(cJSON *h) { edit_metadata_json(h, "outputs", second_output_nowhere); }
static void output_twice(cJSON *h) { edit_metadata_json(h, "outputs", second_output_fine); }
static void add_of_different_shapes(cJSON *h) { edit_metadata_json(h, "graph", add_with_coarse); }
static void upsample_too_far(cJSON *h) { edit_metadata_json(h, "graph", upsample_by_4); }
static void any_size(cJSON *h) { edit_metadata_json(h, "input", multiple_of_1); }
static void even_sizes(cJSON *h) { edit_metadata_json(h, "input", multiple_of_2); }

TEST(model_bad_multi_output_graphs_are_refused) {
    blob b = read_fixture(GOOD_NET);
    static const struct {
        const char *what;
        void (*mutate)(cJSON *header);
        const char *expect;
    } cases[] = {
        {"output naming no op", output_nowhere, "output 'nowhere' is not the name of any graph op"},
        {"output listed twice", output_twice, "\"outputs\" lists 'fine' twice"},
        {"add of different shapes", add_of_different_shapes,
         "graph op 4 (add): adds op 3 (upsample), 8x12x16, and op 2 (conv2d), 8x6x8: the shapes differ"},
        {"upsample output of the wrong size", upsample_too_far,
         "graph op 4 (add): adds op 3 (upsample), 8x24x32, and op 0 (conv2d), 8x12x16: the shapes differ"},
        /* pooled by 2 then upsampled by 2: odd sides do not come back to their size */
        {"size_multiple 1 admits odd sides", any_size,
         "at a 3x3 input (a multiple of \"size_multiple\" 1), graph op 4 adds op 3 (upsample), 8x2x2, and op 0 "
         "(conv2d), 8x3x3: the shapes differ"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob bad = with_header(&b, cases[i].mutate);
        expect_refused(failures, cases[i].what, &bad, cases[i].expect, NULL);
        free(bad.bytes);
    }
    blob good = with_header(&b, even_sizes); /* every even side works */
    emote_error err;
    emote_model *m = emote_model_open_memory(good.bytes, good.size, "even.safetensors", &err);
    CHECKF(m != NULL && emote_model_size_multiple(m) == 2, "%s", m ? "" : err.message);
    emote_model_close(m);
    free(good.bytes);
    free(b.bytes);
}
