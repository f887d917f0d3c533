/* The library's contracts (include/emote.h): every entry point given NULL where its comment
 * does not allow it, an image with no pixels, 0 or 5 channels or no width, a session of
 * another model or a batch larger than the session's answers an error with a reason, and
 * never crashes or reads out of bounds (this file runs under ASan/UBSan and valgrind). */
#include <stdlib.h>
#include <string.h>

#include "emote.h"
#include "harness.h"

#define CLASSIFIER "tests/fixtures/emotenet_small.safetensors"
#define DETECTOR "models/yunet.safetensors"

static emote_model *open_model(const char *path, int *failures) {
    emote_error err;
    emote_model *m = emote_model_open(path, &err);
    CHECKF(m != NULL, "%s", err.message);
    return m;
}

/* status is an argument error whose message contains `expect`. */
#define CHECK_REFUSED(status, err, expect)                                                                           \
    CHECKF((status) == EMOTE_ERR_ARGUMENT && strstr((err).message, (expect)) != NULL, "status %d, message '%s'",     \
           (int)(status), (err).message)

TEST(contract_model_open_and_accessors_take_null) {
    emote_error err = {{0}};
    CHECK(emote_model_open_memory(NULL, 100, "x.safetensors", &err) == NULL);
    CHECKF(strstr(err.message, "x.safetensors: no model data") != NULL, "%s", err.message);
    CHECK(emote_model_open_memory(NULL, 100, NULL, NULL) == NULL);
    err.message[0] = '\0';
    CHECK(emote_model_open(NULL, &err) == NULL);
    CHECKF(strstr(err.message, "no path") != NULL, "%s", err.message);
    CHECK(emote_model_name(NULL) == NULL);
    CHECK(emote_model_num_classes(NULL) == 0);
    CHECK(emote_model_label(NULL, 0) == NULL);
    CHECK(emote_model_input(NULL) == NULL);
    CHECK(emote_input_floats(NULL) == 0);
    CHECK(emote_model_metadata(NULL, "format") == NULL);
    CHECK(emote_model_param_count(NULL) == 0 && emote_model_macs(NULL) == 0);
    CHECK(emote_model_num_ops(NULL) == 0 && emote_model_op_kind(NULL, 0) == NULL);
    CHECK(emote_model_num_outputs(NULL) == 0 && emote_model_output_name(NULL, 0) == NULL);
    CHECK(emote_model_size_multiple(NULL) == 0);
    emote_model_close(NULL);
    emote_model *m = open_model(CLASSIFIER, failures);
    if (m) CHECK(emote_model_metadata(m, NULL) == NULL);
    emote_model_close(m);
}

TEST(contract_session_and_classify_take_null) {
    emote_error err = {{0}};
    CHECK(emote_session_new(NULL, 4, 1, &err) == NULL);
    CHECKF(strstr(err.message, "no model") != NULL, "%s", err.message);
    CHECK(emote_session_model(NULL) == NULL && emote_session_max_batch(NULL) == 0);
    emote_session_set_trace(NULL, NULL, NULL);
    emote_session_free(NULL);
    emote_model *m = open_model(CLASSIFIER, failures);
    emote_session *s = m ? emote_session_new(m, 2, 1, &err) : NULL;
    CHECKF(!m || s, "%s", err.message);
    if (!s) {
        emote_model_close(m);
        return;
    }
    CHECK(emote_session_model(s) == m && emote_session_max_batch(s) == 2);
    float *in = calloc(emote_input_floats(m) * 3, sizeof(float));
    float probs[3 * 7];
    CHECK_REFUSED(emote_classify(NULL, in, 1, probs, &err), err, "no session");
    CHECK_REFUSED(emote_classify(s, NULL, 1, probs, &err), err, "no inputs");
    CHECK_REFUSED(emote_classify(s, in, 1, NULL, &err), err, "no probs");
    CHECK_REFUSED(emote_classify(s, in, 3, probs, &err), err, "outside 1..2");
    CHECK(emote_classify(s, in, 2, probs, &err) == EMOTE_OK);
    free(in);
    emote_session_free(s);
    emote_model_close(m);
}

TEST(contract_model_run_takes_null) {
    emote_error err = {{0}};
    emote_model *d = open_model(DETECTOR, failures);
    if (!d) return;
    emote_tensor out[12];
    float *x = calloc(3 * 32 * 32, sizeof(float));
    CHECK_REFUSED(emote_model_run(NULL, x, 32, 32, out, &err), err, "no model");
    CHECK_REFUSED(emote_model_run(d, NULL, 32, 32, out, &err), err, "no input");
    CHECK_REFUSED(emote_model_run(d, x, 32, 32, NULL, &err), err, "no outputs");
    CHECK_REFUSED(emote_model_run(d, x, 0, 32, out, &err), err, "multiples of");
    emote_tensors_free(NULL, 3);
    free(x);
    emote_model_close(d);
}

TEST(contract_faces_refuse_bad_images) {
    emote_error err = {{0}};
    emote_model *d = open_model(DETECTOR, failures);
    if (!d) return;
    emote_face *faces = NULL, face = {.x = 0, .y = 0, .w = 4, .h = 4};
    int n = -1;
    unsigned char *px = calloc(4 * 8 * 8, 1);
    emote_image good = {.width = 8, .height = 8, .channels = 3, .pixels = px};
    emote_image no_pixels = {.width = 8, .height = 8, .channels = 3};
    emote_image no_width = {.width = 0, .height = 8, .channels = 3, .pixels = px};
    emote_image zero_channels = {.width = 8, .height = 8, .channels = 0, .pixels = px};
    emote_image five_channels = {.width = 8, .height = 8, .channels = 5, .pixels = px};
    const emote_image *bad[] = {&no_pixels, &no_width, &zero_channels, &five_channels, NULL};
    for (int i = 0; i < 5; i++) {
        CHECK_REFUSED(emote_detect_faces(d, bad[i], NULL, &faces, &n, &err), err, "emote_detect_faces: ");
        CHECK(faces == NULL && n == 0);
        emote_image crop = {0};
        CHECK_REFUSED(emote_face_crop(bad[i], &face, 1.0f, 16, &crop, &err), err, "emote_face_crop: ");
        CHECK(crop.pixels == NULL);
        float in[48 * 48];
        emote_input_spec spec = {1, 48, 48, {0.5f}, {0.25f}};
        CHECK_REFUSED(emote_preprocess(&spec, bad[i], in, &err), err, "preprocess");
        CHECK_REFUSED(emote_image_resize(bad[i], 4, 4, &crop, &err), err, "resize: ");
    }
    CHECK_REFUSED(emote_detect_faces(NULL, &good, NULL, &faces, &n, &err), err, "no detector");
    CHECK_REFUSED(emote_detect_faces(d, &good, NULL, NULL, &n, &err), err, "no faces");
    CHECK_REFUSED(emote_detect_faces(d, &good, NULL, &faces, NULL, &err), err, "no count");
    emote_image crop = {0};
    CHECK_REFUSED(emote_face_crop(&good, NULL, 1.0f, 16, &crop, &err), err, "no face");
    CHECK_REFUSED(emote_face_crop(&good, &face, 1.0f, 16, NULL, &err), err, "no output image");
    CHECK(emote_face_crop(&good, &face, 1.0f, 16, &crop, &err) == EMOTE_OK && crop.width == 16);
    emote_image_free(&crop);
    free(px);
    emote_model_close(d);
}

/* ---- the pipeline ---------------------------------------------------------------- */

typedef struct {
    const char *const *paths;
    int next, results, failed;
} list_input;

static int next_path(void *user, const char **path, const char **error) {
    list_input *l = user;
    (void)error;
    if (!l->paths[l->next]) return 0;
    *path = l->paths[l->next++];
    return 1;
}

static int count_result(void *user, const emote_result *r) {
    list_input *l = user;
    l->results++;
    l->failed += r->error != NULL;
    return 1;
}

TEST(contract_pipeline_checks_its_session) {
    emote_error err = {{0}};
    emote_model *m = open_model(CLASSIFIER, failures), *d = open_model(DETECTOR, failures);
    emote_session *s = m ? emote_session_new(m, 2, 1, &err) : NULL;
    if (!s || !d) {
        emote_session_free(s);
        emote_model_close(m);
        emote_model_close(d);
        return;
    }
    static const char *const paths[] = {"models/samples/astronaut-collins-mirrored-48px.png",
                                        "models/samples/astronaut-collins.png", "no/such/file.png", NULL};
    list_input l = {paths, 0, 0, 0};
    emote_pipeline_options o = {.batch = 2, .readers = 1};
    emote_pipeline_counts counts;
    /* A detector's inputs are far larger than the classifier's: its session's buffers would overflow. */
    CHECK_REFUSED(emote_pipeline_run(d, s, &o, next_path, count_result, &l, &counts, &err), err,
                  "the session was made for");
    CHECK(l.next == 0 && l.results == 0 && counts.done == 0);
    o.batch = 3;
    CHECK_REFUSED(emote_pipeline_run(m, s, &o, next_path, count_result, &l, &counts, &err), err,
                  "batch 3 is larger than the session's 2");
    o.batch = 2;
    CHECK_REFUSED(emote_pipeline_run(NULL, s, &o, next_path, count_result, &l, NULL, &err), err, "no model");
    CHECK_REFUSED(emote_pipeline_run(m, NULL, &o, next_path, count_result, &l, NULL, &err), err, "no session");
    CHECK_REFUSED(emote_pipeline_run(m, s, NULL, next_path, count_result, &l, NULL, &err), err, "no options");
    CHECK_REFUSED(emote_pipeline_run(m, s, &o, NULL, count_result, &l, NULL, &err), err, "no input function");
    CHECK_REFUSED(emote_pipeline_run(m, s, &o, next_path, NULL, &l, NULL, &err), err, "no result function");
    o.detector = m; /* a classifier is no face detector */
    CHECK_REFUSED(emote_pipeline_run(m, s, &o, next_path, count_result, &l, NULL, &err), err, "is not a face detector");
    o.detector = NULL;
    CHECK(l.next == 0);
    CHECKF(emote_pipeline_run(m, s, &o, next_path, count_result, &l, &counts, &err) == EMOTE_OK, "%s", err.message);
    CHECK(l.results == 3 && l.failed == 1 && counts.done == 3 && counts.failed == 1);
    emote_session_free(s);
    emote_model_close(m);
    emote_model_close(d);
}

/* An input function that would wait gets asked for the next path only once every path
 * before it has its result: results stream. */
typedef struct {
    list_input list;
    int asked_with_results_missing;
} slow_input;

static int next_slow_path(void *user, const char **path, const char **error) {
    slow_input *s = user;
    if (s->list.next > s->list.results) s->asked_with_results_missing++;
    return next_path(&s->list, path, error);
}

static int always_waits(void *user) {
    (void)user;
    return 1;
}

TEST(pipeline_streams_when_the_input_would_wait) {
    emote_error err = {{0}};
    emote_model *m = open_model(CLASSIFIER, failures);
    emote_session *s = m ? emote_session_new(m, 4, 1, &err) : NULL;
    static const char *const paths[] = {"models/samples/astronaut-collins-mirrored-48px.png", "no/such.png",
                                        "models/samples/astronaut-collins.png", NULL};
    for (int readers = 0; s && readers <= 2; readers += 2) {
        slow_input in = {{paths, 0, 0, 0}, 0};
        emote_pipeline_options o = {.batch = 4, .readers = readers, .input_would_wait = always_waits};
        CHECKF(emote_pipeline_run(m, s, &o, next_slow_path, count_result, &in, NULL, &err) == EMOTE_OK, "%s",
               err.message);
        CHECKF(in.list.results == 3 && in.asked_with_results_missing == 0, "readers %d: %d results, asked %d times early",
               readers, in.list.results, in.asked_with_results_missing);
    }
    emote_session_free(s);
    emote_model_close(m);
}
