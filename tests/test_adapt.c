/* emote adapt's library pieces: the head fit (src/head_fit.c), features on the session, the
 * model writer, SHA-256. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "graph.h"
#include "harness.h"
#include "head_fit.h"
#include "sha256.h"
#include "util.h"

#define SMALL_MODEL "tests/fixtures/emotenet_small.safetensors"

/* Deterministic pseudo-random numbers in [0, 1). */
static double uniform(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*state >> 11) / 9007199254740992.0;
}

static double gaussian(uint64_t *state) {
    double u = uniform(state) + 1e-12, v = uniform(state);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* rows x dims features, class c centred at distance `spread` along dimension c. */
static void make_blobs(float *x, int *y, int rows, int dims, int classes, double spread, uint64_t seed) {
    for (int i = 0; i < rows; i++) {
        y[i] = i % classes;
        for (int j = 0; j < dims; j++) x[(size_t)i * dims + j] = (float)(gaussian(&seed) + (j == y[i] ? spread : 0));
    }
}

static double train_accuracy(const softmax_head *h, const float *x, const int *y, int rows) {
    int right = 0;
    for (int i = 0; i < rows; i++) right += head_predict(h, x + (size_t)i * h->dims) == y[i];
    return (double)right / rows;
}

TEST(adapt_fit_separates_a_separable_problem) {
    enum { ROWS = 90, DIMS = 6, CLASSES = 3 };
    float x[ROWS * DIMS];
    int y[ROWS], fold_of[ROWS], group[ROWS], predicted[ROWS];
    make_blobs(x, y, ROWS, DIMS, CLASSES, 8.0, 1);
    fit_data d = {.rows = ROWS, .dims = DIMS, .classes = CLASSES, .x = x, .y = y};
    softmax_head h;
    CHECK(head_alloc(&h, CLASSES, DIMS));
    CHECK(head_fit(&d, 1e-3, &h));
    CHECKF(train_accuracy(&h, x, y, ROWS) == 1.0, "accuracy %g", train_accuracy(&h, x, y, ROWS));
    for (int i = 0; i < ROWS; i++) group[i] = i;
    CHECK(assign_folds(y, group, ROWS, CLASSES, ROWS, 5, fold_of));
    cv_summary cv;
    CHECK(head_cross_validate(&d, fold_of, 5, predicted, &cv));
    int right = 0;
    for (int i = 0; i < ROWS; i++) right += predicted[i] == y[i];
    CHECKF(right == ROWS, "cross-validated %d of %d", right, ROWS);
    CHECK(cv.score[cv.best] == 1.0);
    head_free(&h);
}

/* A problem a head cannot get right is not reported as solved: labels that are noise. */
TEST(adapt_cross_validation_of_noise_is_near_chance) {
    enum { ROWS = 400, DIMS = 10, CLASSES = 2 };
    float *x = malloc(sizeof(float) * ROWS * DIMS);
    int y[ROWS], fold_of[ROWS], group[ROWS], predicted[ROWS];
    uint64_t seed = 7;
    for (int i = 0; i < ROWS * DIMS; i++) x[i] = (float)gaussian(&seed);
    for (int i = 0; i < ROWS; i++) y[i] = uniform(&seed) < 0.5, group[i] = i;
    fit_data d = {.rows = ROWS, .dims = DIMS, .classes = CLASSES, .x = x, .y = y};
    cv_summary cv;
    CHECK(assign_folds(y, group, ROWS, CLASSES, ROWS, 5, fold_of));
    CHECK(head_cross_validate(&d, fold_of, 5, predicted, &cv));
    CHECKF(cv.score[cv.best] < 0.62, "noise scored %g", cv.score[cv.best]);
    free(x);
}

/* The standardisation is folded into the head: features scaled and shifted per dimension
 * give a head with the same logits on the correspondingly transformed rows. */
TEST(adapt_folded_standardization_gives_the_same_logits) {
    enum { ROWS = 120, DIMS = 5, CLASSES = 3 };
    float x[ROWS * DIMS], moved[ROWS * DIMS];
    int y[ROWS];
    make_blobs(x, y, ROWS, DIMS, CLASSES, 1.0, 3);
    const double scale[DIMS] = {1, 10, 0.01, 3, 200}, shift[DIMS] = {0, -5, 100, 0.5, 1000};
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < DIMS; j++) moved[i * DIMS + j] = (float)(x[i * DIMS + j] * scale[j] + shift[j]);
    fit_data a = {.rows = ROWS, .dims = DIMS, .classes = CLASSES, .x = x, .y = y}, b = a;
    b.x = moved;
    softmax_head ha, hb;
    CHECK(head_alloc(&ha, CLASSES, DIMS) && head_alloc(&hb, CLASSES, DIMS));
    CHECK(head_fit(&a, 0.01, &ha) && head_fit(&b, 0.01, &hb));
    double worst = 0;
    for (int i = 0; i < ROWS; i++)
        for (int c = 0; c < CLASSES; c++) {
            double la = ha.bias[c], lb = hb.bias[c];
            for (int j = 0; j < DIMS; j++) {
                la += ha.weight[c * DIMS + j] * x[i * DIMS + j];
                lb += hb.weight[c * DIMS + j] * moved[i * DIMS + j];
            }
            worst = fmax(worst, fabs(la - lb));
        }
    CHECKF(worst < 1e-3, "logits differ by %g", worst);
    head_free(&ha);
    head_free(&hb);
}

/* Rows called class 1 (the minority) and how many of them are right. */
static void minority_calls(const softmax_head *h, const float *x, const int *y, int rows, int *found, int *called) {
    *found = *called = 0;
    for (int i = 0; i < rows; i++) {
        int p = head_predict(h, x + (size_t)i * h->dims);
        *found += p == 1 && y[i] == 1;
        *called += p == 1;
    }
}

TEST(adapt_class_weights_balance_an_unbalanced_set) {
    /* 10 of class 1 among 200, overlapping: unweighted, a head mostly says class 0. */
    enum { ROWS = 200, DIMS = 2 };
    float x[ROWS * DIMS];
    int y[ROWS], found, called;
    uint64_t seed = 11;
    for (int i = 0; i < ROWS; i++) {
        y[i] = i < 10;
        x[i * DIMS] = (float)(gaussian(&seed) + (y[i] ? 1.5 : 0));
        x[i * DIMS + 1] = (float)gaussian(&seed);
    }
    fit_data d = {.rows = ROWS, .dims = DIMS, .classes = 2, .x = x, .y = y};
    softmax_head h;
    CHECK(head_alloc(&h, 2, DIMS) && head_fit(&d, 1e-3, &h));
    minority_calls(&h, x, y, ROWS, &found, &called);
    CHECKF(found >= 7 && called > 20, "balanced: minority recall %d/10, %d rows called minority", found, called);
    d.weighting = CLASS_WEIGHTS_NONE;
    CHECK(head_fit(&d, 1e-3, &h));
    minority_calls(&h, x, y, ROWS, &found, &called);
    CHECKF(called <= 5, "unweighted: %d rows called minority (%d right)", called, found);
    head_free(&h);
}

/* A prior head that knows the answer: at a strong penalty the fit stays at it (in the
 * features' own units, through the standardisation), where a fit toward zero on 6 rows of
 * noisy features does not get the fresh rows right. */
TEST(adapt_a_prior_head_holds_at_a_strong_penalty) {
    enum { ROWS = 6, FRESH = 300, DIMS = 20, CLASSES = 3 };
    float x[ROWS * DIMS], fresh[FRESH * DIMS];
    int y[ROWS], fresh_y[FRESH];
    make_blobs(x, y, ROWS, DIMS, CLASSES, 1.5, 5);
    make_blobs(fresh, fresh_y, FRESH, DIMS, CLASSES, 1.5, 6);
    for (int i = 0; i < ROWS * DIMS; i++) x[i] = x[i] * 3 + 10; /* the prior is in these units */
    for (int i = 0; i < FRESH * DIMS; i++) fresh[i] = fresh[i] * 3 + 10;
    softmax_head prior, toward_prior, toward_zero;
    CHECK(head_alloc(&prior, CLASSES, DIMS) && head_alloc(&toward_prior, CLASSES, DIMS) &&
          head_alloc(&toward_zero, CLASSES, DIMS));
    for (int c = 0; c < CLASSES; c++) { /* logit c = x_c / 3 - 10 / 3: the blobs' centre dimension */
        prior.weight[c * DIMS + c] = 1.0 / 3;
        prior.bias[c] = -10.0 / 3;
    }
    const bool every_class[CLASSES] = {true, true, true};
    fit_data d = {.rows = ROWS, .dims = DIMS, .classes = CLASSES, .x = x, .y = y};
    CHECK(head_fit(&d, 100, &toward_zero));
    d.prior = &prior;
    d.prior_has_class = every_class;
    CHECK(head_fit(&d, 100, &toward_prior));
    double prior_accuracy = train_accuracy(&prior, fresh, fresh_y, FRESH),
           held = train_accuracy(&toward_prior, fresh, fresh_y, FRESH),
           from_zero = train_accuracy(&toward_zero, fresh, fresh_y, FRESH);
    CHECKF(fabs(held - prior_accuracy) < 0.02, "prior %g, fitted toward it %g", prior_accuracy, held);
    CHECKF(held > from_zero + 0.1, "toward the prior %g, toward zero %g", held, from_zero);
    double moved = 0;
    for (int i = 0; i < CLASSES * DIMS; i++) moved = fmax(moved, fabs(toward_prior.weight[i] - prior.weight[i]));
    CHECKF(moved < 0.02, "weights moved %g from the prior", moved);
    head_free(&prior);
    head_free(&toward_prior);
    head_free(&toward_zero);
}

/* The chosen strength is the strongest within one standard error of the best score. */
TEST(adapt_cross_validation_takes_the_strongest_within_one_standard_error) {
    enum { ROWS = 150, DIMS = 8, CLASSES = 3 };
    float x[ROWS * DIMS];
    int y[ROWS], fold_of[ROWS], group[ROWS], predicted[ROWS];
    make_blobs(x, y, ROWS, DIMS, CLASSES, 1.0, 9);
    for (int i = 0; i < ROWS; i++) group[i] = i;
    fit_data d = {.rows = ROWS, .dims = DIMS, .classes = CLASSES, .x = x, .y = y};
    cv_summary cv;
    CHECK(assign_folds(y, group, ROWS, CLASSES, ROWS, 5, fold_of));
    CHECK(head_cross_validate(&d, fold_of, 5, predicted, &cv));
    int top = 0;
    for (int l = 0; l < FIT_NUM_LAMBDAS; l++) top = cv.score[l] > cv.score[top] ? l : top;
    CHECKF(cv.standard_error[top] > 0, "standard error %g", cv.standard_error[top]);
    CHECKF(cv.score[cv.best] >= cv.score[top] - cv.standard_error[top], "chose %d (%g), best %d (%g +- %g)", cv.best,
           cv.score[cv.best], top, cv.score[top], cv.standard_error[top]);
    for (int l = 0; l < cv.best; l++)
        CHECKF(cv.score[l] < cv.score[top] - cv.standard_error[top], "strength %d (%g) was within reach", l, cv.score[l]);
}

TEST(adapt_folds_keep_groups_whole_and_classes_even) {
    enum { ROWS = 300, CLASSES = 3, GROUPS = 30, FOLDS = 5 };
    int y[ROWS], group[ROWS], fold_of[ROWS], group_fold[GROUPS];
    long per_fold[FOLDS][CLASSES] = {{0}};
    for (int i = 0; i < ROWS; i++) y[i] = i % CLASSES, group[i] = (i * 7) % GROUPS;
    CHECK(assign_folds(y, group, ROWS, CLASSES, GROUPS, FOLDS, fold_of));
    for (int g = 0; g < GROUPS; g++) group_fold[g] = -1;
    int split = 0;
    for (int i = 0; i < ROWS; i++) {
        split += group_fold[group[i]] >= 0 && group_fold[group[i]] != fold_of[i];
        group_fold[group[i]] = fold_of[i];
        per_fold[fold_of[i]][y[i]]++;
    }
    CHECKF(split == 0, "%d rows on another fold than their group", split);
    for (int f = 0; f < FOLDS; f++)
        for (int c = 0; c < CLASSES; c++) CHECKF(per_fold[f][c] == 20, "fold %d class %d: %ld", f, c, per_fold[f][c]);
    /* each row its own group: stratified, 4 of each class in each of 5 folds of 60 */
    for (int i = 0; i < 60; i++) group[i] = i;
    CHECK(assign_folds(y, group, 60, CLASSES, 60, FOLDS, fold_of));
    memset(per_fold, 0, sizeof per_fold);
    for (int i = 0; i < 60; i++) per_fold[fold_of[i]][y[i]]++;
    for (int f = 0; f < FOLDS; f++)
        for (int c = 0; c < CLASSES; c++) CHECKF(per_fold[f][c] == 4, "fold %d class %d: %ld", f, c, per_fold[f][c]);
}

TEST(adapt_sha256_known_answers) {
    char hex[65];
    sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two_blocks, strlen(two_blocks), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

/* ---- features and the writer ----------------------------------------------------------- */

typedef struct {
    int op;
    float *values; /* NCHW copy of op's output */
} trace_capture;

static void capture(void *user, int op, const char *kind, const float *nchw, int n, int c, int h, int w) {
    (void)kind;
    trace_capture *t = user;
    if (op == t->op) memcpy(t->values, nchw, sizeof(float) * (size_t)n * c * h * w);
}

static float *random_inputs(const emote_model *m, int n, uint64_t seed) {
    size_t count = emote_input_floats(m) * (size_t)n;
    float *in = malloc(sizeof(float) * count);
    for (size_t i = 0; i < count; i++) in[i] = (float)gaussian(&seed);
    return in;
}

TEST(adapt_features_are_the_last_dense_layers_input) {
    emote_error err;
    emote_model *m = emote_model_open(SMALL_MODEL, &err);
    CHECK(m != NULL);
    if (!m) return;
    enum { N = 7 };
    int dims = emote_model_feature_size(m), head = model_head_op(m);
    CHECK(dims == 32 && head == m->num_ops - 2);
    float *in = random_inputs(m, N, 5), traced[N * 32], one[N * 32], many[N * 32];
    emote_session *s1 = emote_session_new(m, N, 1, &err), *s3 = emote_session_new(m, N, 3, &err);
    trace_capture t = {head - 1, traced};
    emote_session_set_trace(s1, capture, &t);
    float probs[N * 7];
    CHECK(emote_classify(s1, in, N, probs, &err) == EMOTE_OK);
    emote_session_set_trace(s1, NULL, NULL);
    CHECK(emote_features(s1, in, N, one, &err) == EMOTE_OK);
    CHECK(emote_features(s3, in, N, many, &err) == EMOTE_OK);
    CHECK(memcmp(traced, one, sizeof one) == 0);
    CHECK(memcmp(one, many, sizeof one) == 0); /* whatever the thread count */
    for (int i = 0; i < N; i++) { /* whatever the position in the batch */
        float single[32];
        CHECK(emote_features(s1, in + i * emote_input_floats(m), 1, single, &err) == EMOTE_OK);
        CHECK(memcmp(single, one + i * 32, sizeof single) == 0);
    }
    emote_session_free(s1);
    emote_session_free(s3);
    free(in);
    emote_model_close(m);
}

static const char *const new_labels[] = {"engaged", "bored"};

/* The model written with a new head gives softmax(W f + b) of the base's features f. */
TEST(adapt_written_model_runs_its_new_head) {
    emote_error err;
    emote_model *base = emote_model_open(SMALL_MODEL, &err);
    CHECK(base != NULL);
    if (!base) return;
    float weight[2 * 32], bias[2] = {0.25f, -0.5f};
    uint64_t seed = 9;
    for (int i = 0; i < 64; i++) weight[i] = (float)gaussian(&seed);
    const char *keys[] = {"provenance", "metrics"}, *values[] = {"{\"data\":\"test\"}", NULL};
    emote_head head = {2, new_labels, weight, bias, 2, keys, values};
    char path[] = "/tmp/emote-adapt-test-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(emote_model_write_head(base, &head, path, 0, &err) != EMOTE_OK); /* exists, no replace */
    CHECKF(strstr(err.message, "exists") != NULL, "%s", err.message);
    CHECK(emote_model_write_head(base, &head, path, 1, &err) == EMOTE_OK);
    emote_model *m = emote_model_open(path, &err);
    CHECKF(m != NULL, "%s", err.message);
    if (m) {
        CHECK(emote_model_num_classes(m) == 2 && !strcmp(emote_model_label(m, 1), "bored"));
        CHECK(!strcmp(emote_model_metadata(m, "provenance"), "{\"data\":\"test\"}"));
        CHECK(emote_model_metadata(m, "metrics") == NULL);
        CHECK(strstr(emote_model_metadata(m, "config"), "\"num_classes\":2") != NULL);
        enum { N = 4 };
        float *in = random_inputs(base, N, 13), features[N * 32], probs[N * 2];
        emote_session *sb = emote_session_new(base, N, 1, &err), *sm = emote_session_new(m, N, 1, &err);
        CHECK(emote_features(sb, in, N, features, &err) == EMOTE_OK);
        CHECK(emote_classify(sm, in, N, probs, &err) == EMOTE_OK);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double logit[2];
            for (int c = 0; c < 2; c++) {
                logit[c] = bias[c];
                for (int j = 0; j < 32; j++) logit[c] += (double)weight[c * 32 + j] * features[i * 32 + j];
            }
            double p1 = 1 / (1 + exp(logit[0] - logit[1]));
            worst = fmax(worst, fabs(p1 - probs[i * 2 + 1]));
        }
        CHECKF(worst < 1e-5, "probabilities differ by %g", worst);
        emote_session_free(sb);
        emote_session_free(sm);
        free(in);
    }
    emote_model_close(m);
    unlink(path);
    emote_model_close(base);
}

/* The base's own head written back gives bitwise the base's probabilities: every other
 * tensor is copied unchanged. */
TEST(adapt_writer_copies_the_base_unchanged) {
    emote_error err;
    emote_model *base = emote_model_open(SMALL_MODEL, &err);
    CHECK(base != NULL);
    if (!base) return;
    const dense_layer *fc = &base->ops[model_head_op(base)].u.linear;
    const char *labels[7];
    for (int k = 0; k < 7; k++) labels[k] = emote_model_label(base, k);
    emote_head head = {7, labels, fc->weight, fc->bias, 0, NULL, NULL};
    unsigned char *data;
    size_t size;
    CHECK(emote_model_serialize_head(base, &head, &data, &size, &err) == EMOTE_OK);
    emote_model *copy = emote_model_open_memory(data, size, "copy", &err);
    CHECKF(copy != NULL, "%s", err.message);
    if (copy) {
        float *in = random_inputs(base, 3, 17), a[21], b[21];
        emote_session *sa = emote_session_new(base, 3, 1, &err), *sb = emote_session_new(copy, 3, 1, &err);
        CHECK(!emote_classify(sa, in, 3, a, &err) && !emote_classify(sb, in, 3, b, &err));
        CHECK(memcmp(a, b, sizeof a) == 0);
        emote_session_free(sa);
        emote_session_free(sb);
        free(in);
    }
    emote_model_close(copy);
    free(data);
    const char *bad_labels[] = {"ok", "no,comma"};
    emote_head bad = {2, bad_labels, fc->weight, fc->bias, 0, NULL, NULL};
    CHECK(emote_model_serialize_head(base, &bad, &data, &size, &err) == EMOTE_ERR_ARGUMENT);
    emote_model_close(base);
}

/* tests/fixtures/relu.safetensors without its linear op: conv (its channels as the labels),
 * relu, global average pool, softmax. */
static emote_model *model_without_dense_layer(emote_error *err) {
    unsigned char *bytes;
    size_t size;
    if (read_file_all("tests/fixtures/relu.safetensors", (size_t)1 << 26, &bytes, &size, err)) return NULL;
    size_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    cJSON *header = cJSON_ParseWithLength((const char *)bytes + 8, n);
    cJSON *metadata = cJSON_GetObjectItem(header, "__metadata__");
    cJSON *graph = cJSON_Parse(cJSON_GetObjectItem(metadata, "graph")->valuestring);
    cJSON_DeleteItemFromArray(graph, 3);
    int channels = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(header, "layers.0.weight"), "shape"), 0)->valueint;
    cJSON *labels = cJSON_CreateArray();
    for (int k = 0; k < channels; k++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", k);
        cJSON_AddItemToArray(labels, cJSON_CreateString(name));
    }
    char *graph_text = cJSON_PrintUnformatted(graph), *labels_text = cJSON_PrintUnformatted(labels);
    cJSON_ReplaceItemInObject(metadata, "graph", cJSON_CreateString(graph_text));
    cJSON_ReplaceItemInObject(metadata, "labels", cJSON_CreateString(labels_text));
    char *json = cJSON_PrintUnformatted(header);
    size_t jn = strlen(json), data = size - 8 - n;
    unsigned char *out = malloc(8 + jn + data);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)jn >> (8 * i));
    memcpy(out + 8, json, jn);
    memcpy(out + 8 + jn, bytes + 8 + n, data);
    emote_model *m = emote_model_open_memory(out, 8 + jn + data, "no-dense.safetensors", err);
    free(out);
    free(json);
    free(graph_text);
    free(labels_text);
    cJSON_Delete(labels);
    cJSON_Delete(graph);
    cJSON_Delete(header);
    free(bytes);
    return m;
}

TEST(adapt_refuses_a_model_without_a_final_dense_layer) {
    emote_error err;
    emote_model *m = model_without_dense_layer(&err);
    CHECKF(m != NULL, "%s", err.message);
    if (!m) return;
    CHECK(emote_model_feature_size(m) == 0);
    emote_session *s = emote_session_new(m, 1, 1, &err);
    float in[4096] = {0}, out[4096];
    CHECK(s && emote_features(s, in, 1, out, &err) != EMOTE_OK && strstr(err.message, "no final dense layer"));
    emote_head head = {2, new_labels, out, out, 0, NULL, NULL};
    unsigned char *data;
    size_t size;
    CHECK(emote_model_serialize_head(m, &head, &data, &size, &err) != EMOTE_OK);
    CHECKF(strstr(err.message, "no-dense.safetensors has no final dense layer") != NULL, "%s", err.message);
    emote_session_free(s);
    emote_model_close(m);
}
