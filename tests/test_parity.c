/* C engine vs the PyTorch reference (tools/graph_ref.py, float64) on the fixtures that
 * tools/make_fixtures.py writes: every op's output and the final probabilities. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "net.h"
#include "safetensors.h"
#include "util.h"

#define FIXTURES "tests/fixtures/"
#define MAX_OP_NMSE 1e-7
#define MAX_PROB_DIFF 1e-5

static const char *const cases[] = {
    "conv_k3_s1_p1", "conv_k5_s2_p2_bias_nobn", "conv_k1_s1_p0", "conv_k1_s2_p0", "conv_k3_s2_p0",
    "conv_rgb_k3", "maxpool_k2_s2", "maxpool_k3_s2_p1", "squeeze_excite_bias", "squeeze_excite_nobias",
    "residual_identity", "residual_projection", "relu", "linear_two_layers", "emotenet_small", "emotenet_deep",
};

typedef struct {
    unsigned char *bytes;
    size_t size;
    st_file file;
} expected_file;

static int load_expected(const char *name, expected_file *e) {
    char path[256];
    emote_error err;
    snprintf(path, sizeof path, FIXTURES "%s.expected.safetensors", name);
    if (read_file_all(path, (size_t)1 << 30, &e->bytes, &e->size, &err)) {
        fprintf(stderr, "  %s\n", err.message);
        return 0;
    }
    if (st_parse(e->bytes, e->size, path, &e->file, &err)) {
        fprintf(stderr, "  %s\n", err.message);
        free(e->bytes);
        return 0;
    }
    return 1;
}

static void free_expected(expected_file *e) {
    st_free(&e->file);
    free(e->bytes);
}

static float *tensor_copy(const st_tensor *t) {
    float *v = malloc(t->numel * sizeof(float));
    st_read_floats(t, v);
    return v;
}

typedef struct {
    const st_file *expected;
    const char *name;
    int *failures;
    int ops_checked;
    double worst_nmse;
} trace_check;

/* Normalised MSE: sum (c - r)^2 / sum r^2 (plain MSE when the reference is all zeros). */
static double nmse(const float *c, const float *r, size_t n) {
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        err += ((double)c[i] - r[i]) * ((double)c[i] - r[i]);
        ref += (double)r[i] * r[i];
    }
    return ref > 0 ? err / ref : err / (double)n;
}

static void check_op(void *user, int op, const char *kind, const float *nchw, int n, int c, int h, int w) {
    trace_check *tc = user;
    int *failures = tc->failures;
    char key[32];
    snprintf(key, sizeof key, "op.%d", op);
    const st_tensor *t = st_find(tc->expected, key);
    CHECKF(t != NULL, "%s: no reference for %s", tc->name, key);
    if (!t) return;
    size_t count = (size_t)n * c * h * w;
    CHECKF(t->numel == count, "%s: %s (%s) has %zu values, reference %zu", tc->name, key, kind, count, t->numel);
    if (t->numel != count) return;
    float *ref = tensor_copy(t);
    double e = nmse(nchw, ref, count);
    CHECKF(e <= MAX_OP_NMSE, "%s: op %d (%s) normalised MSE %.3g > %.1g", tc->name, op, kind, e, MAX_OP_NMSE);
    if (e > tc->worst_nmse) tc->worst_nmse = e;
    free(ref);
    tc->ops_checked++;
}

/* Runs one fixture case; returns the largest |prob - reference|, or INFINITY on failure, and
 * the worst op's normalised MSE in *worst_nmse. */
static double run_case(const char *name, int *failures, double *worst_nmse) {
    char path[256];
    emote_error err;
    expected_file e;
    snprintf(path, sizeof path, FIXTURES "%s.safetensors", name);
    emote_model *m = emote_model_open(path, &err);
    CHECKF(m != NULL, "%s", err.message);
    if (!m || !load_expected(name, &e)) {
        emote_model_close(m);
        return INFINITY;
    }
    const st_tensor *input = st_find(&e.file, "input"), *probs_ref = st_find(&e.file, "probs");
    CHECK(input && probs_ref && input->ndim == 4);
    double worst = INFINITY;
    if (input && probs_ref && input->ndim == 4) {
        int n = (int)input->shape[0], k = emote_model_num_classes(m);
        float *x = tensor_copy(input), *ref = tensor_copy(probs_ref), *probs = malloc(sizeof(float) * n * k);
        emote_session *s = emote_session_new(m, n, 1, &err);
        trace_check tc = {&e.file, name, failures, 0, 0};
        emote_session_set_trace(s, check_op, &tc);
        CHECK(emote_classify(s, x, n, probs, &err) == EMOTE_OK);
        CHECKF(tc.ops_checked == emote_model_num_ops(m), "%s: %d of %d ops checked", name, tc.ops_checked,
               emote_model_num_ops(m));
        worst = 0;
        for (int i = 0; i < n * k; i++) worst = fmax(worst, fabs((double)probs[i] - ref[i]));
        CHECKF(worst <= MAX_PROB_DIFF, "%s: probabilities differ by %.3g > %.1g", name, worst, MAX_PROB_DIFF);
        *worst_nmse = tc.worst_nmse;
        emote_session_free(s);
        free(x);
        free(ref);
        free(probs);
    }
    free_expected(&e);
    emote_model_close(m);
    return worst;
}

TEST(parity_every_fixture_matches_pytorch) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int before = *failures;
        double worst_nmse = INFINITY, worst = run_case(cases[i], failures, &worst_nmse);
        printf("     %-26s max |dprob| %.2e, worst op NMSE %.2e %s\n", cases[i], worst, worst_nmse,
               *failures > before ? "FAIL" : "");
    }
}

/* ---- multi-output graphs (src/net.c) ------------------------------------- */

/* name, model file (NULL: FIXTURES name.safetensors) */
static const char *const net_cases[][2] = {
    {"depthwise_k3_s1", NULL}, {"depthwise_k3_s2_bn", NULL}, {"depthwise_k5_nobias", NULL},
    {"pointwise_depthwise", NULL}, {"upsample_add_two_outputs", NULL}, {"yunet_32x64", "models/yunet.safetensors"},
};

static void check_net_op(void *user, int op, const char *kind, const float *chw, int c, int h, int w) {
    check_op(user, op, kind, chw, 1, c, h, w);
}

/* Checks one named output against out.<name>; returns its normalised MSE. */
static double check_net_output(const char *name, const st_file *expected, const char *output, const emote_tensor *t,
                               int *failures) {
    char key[64];
    snprintf(key, sizeof key, "out.%s", output);
    const st_tensor *ref = st_find(expected, key);
    size_t count = (size_t)t->channels * t->height * t->width;
    CHECKF(ref && ref->numel == count, "%s: output %s: no reference of %zu values", name, output, count);
    if (!ref || ref->numel != count) return INFINITY;
    float *r = tensor_copy(ref);
    double e = nmse(t->data, r, count);
    CHECKF(e <= MAX_OP_NMSE, "%s: output %s normalised MSE %.3g > %.1g", name, output, e, MAX_OP_NMSE);
    free(r);
    return e;
}

static double run_net_case(const char *name, const char *model_path, int *failures) {
    char path[256];
    emote_error err;
    expected_file e;
    snprintf(path, sizeof path, FIXTURES "%s.safetensors", name);
    emote_model *m = emote_model_open(model_path ? model_path : path, &err);
    CHECKF(m != NULL, "%s", err.message);
    if (!m || !load_expected(name, &e)) {
        emote_model_close(m);
        return INFINITY;
    }
    const st_tensor *input = st_find(&e.file, "input");
    double worst = INFINITY;
    CHECK(input && input->ndim == 4 && input->shape[0] == 1);
    if (input && input->ndim == 4 && input->shape[0] == 1) {
        float *x = tensor_copy(input);
        int n = emote_model_num_outputs(m);
        emote_tensor *outputs = calloc((size_t)n, sizeof *outputs);
        trace_check tc = {&e.file, name, failures, 0, 0};
        emote_status s = net_run(m, x, (int)input->shape[2], (int)input->shape[3], outputs, check_net_op, &tc, &err);
        CHECKF(s == EMOTE_OK, "%s: %s", name, err.message);
        CHECKF(tc.ops_checked == emote_model_num_ops(m), "%s: %d of %d ops checked", name, tc.ops_checked,
               emote_model_num_ops(m));
        worst = s == EMOTE_OK ? 0 : INFINITY;
        for (int i = 0; s == EMOTE_OK && i < n; i++)
            worst = fmax(worst, check_net_output(name, &e.file, emote_model_output_name(m, i), &outputs[i], failures));
        emote_tensors_free(outputs, n);
        free(outputs);
        free(x);
    }
    free_expected(&e);
    emote_model_close(m);
    return worst;
}

TEST(parity_multi_output_graphs_match_pytorch) {
    for (size_t i = 0; i < sizeof net_cases / sizeof net_cases[0]; i++) {
        int before = *failures;
        double worst = run_net_case(net_cases[i][0], net_cases[i][1], failures);
        printf("     %-26s worst output NMSE %.2e %s\n", net_cases[i][0], worst, *failures > before ? "FAIL" : "");
    }
}

TEST(net_refuses_sizes_it_cannot_run) {
    emote_error err;
    emote_model *m = emote_model_open("models/yunet.safetensors", &err);
    CHECKF(m != NULL, "%s", err.message);
    if (!m) return;
    float x[3 * 32 * 48] = {0};
    emote_tensor out[12];
    CHECK(emote_model_num_outputs(m) == 12 && emote_model_size_multiple(m) == 32);
    CHECK(emote_model_run(m, x, 32, 48, out, &err) == EMOTE_ERR_ARGUMENT && strstr(err.message, "multiples of 32"));
    CHECK(emote_session_new(m, 1, 1, &err) == NULL && strstr(err.message, "multi-output"));
    emote_model_close(m);
}

/* Runs `total` copies of the fixture's images in batches of `batch` with `threads`. */
static float *classify_in_batches(const emote_model *m, const float *images, int num_images, int total, int batch,
                                  int threads) {
    size_t in = emote_input_floats(m);
    int k = emote_model_num_classes(m);
    float *probs = malloc(sizeof(float) * (size_t)total * k);
    float *inputs = malloc(sizeof(float) * in * (size_t)batch);
    emote_error err;
    emote_session *s = emote_session_new(m, batch, threads, &err);
    for (int start = 0; start < total; start += batch) {
        int n = total - start < batch ? total - start : batch;
        for (int j = 0; j < n; j++) memcpy(inputs + j * in, images + ((start + j) % num_images) * in, in * sizeof(float));
        emote_classify(s, inputs, n, probs + (size_t)start * k, &err);
    }
    emote_session_free(s);
    free(inputs);
    return probs;
}

TEST(parity_same_image_same_probabilities_any_batch_or_threads) {
    emote_error err;
    expected_file e;
    emote_model *m = emote_model_open(FIXTURES "emotenet_deep.safetensors", &err);
    CHECK(m != NULL);
    if (!m || !load_expected("emotenet_deep", &e)) {
        emote_model_close(m);
        return;
    }
    const st_tensor *input = st_find(&e.file, "input");
    float *images = tensor_copy(input);
    /* 130 images: batch 64 runs two full batches and a partial one. EMOTE_TEST_QUICK (set
     * under valgrind, 20-50x slower) keeps one full batch of 64 and a partial one. */
    int num_images = (int)input->shape[0], total = getenv("EMOTE_TEST_QUICK") ? 70 : 130;
    int k = emote_model_num_classes(m);
    float *base = classify_in_batches(m, images, num_images, total, 1, 1);
    const int configs[][2] = {{7, 1}, {64, 1}, {1, 2}, {7, 2}, {64, 2}, {64, 3}};
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        float *p = classify_in_batches(m, images, num_images, total, configs[c][0], configs[c][1]);
        CHECKF(memcmp(p, base, sizeof(float) * (size_t)total * k) == 0,
               "batch %d, %d threads: probabilities not bitwise equal to batch 1, 1 thread", configs[c][0],
               configs[c][1]);
        free(p);
    }
    /* The same image in every position of a batch gives the same answer. */
    for (int i = 0; i < total; i++)
        CHECK(memcmp(base + (size_t)i * k, base + (size_t)(i % num_images) * k, sizeof(float) * k) == 0);
    free(base);
    free(images);
    free_expected(&e);
    emote_model_close(m);
}
