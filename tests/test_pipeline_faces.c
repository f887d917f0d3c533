/* The pipeline's face stage (emote_pipeline_options.detector) over the composed scenes of
 * tests/fixtures/faces: one result per face in input order, the faces emote_detect_faces
 * finds (boxes clipped), "no face found" for the empty scene, an error for a missing file;
 * probabilities bitwise the same for 0 and 3 readers, batch 1 and 4, and a memory budget
 * of one byte (every image read alone); max_faces, main_face_only and keep_crops. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emote.h"
#include "harness.h"

#define CLASSIFIER "models/emote-fer2013-faces.safetensors"
#define DETECTOR "models/yunet.safetensors"
#define MAX_RESULTS 64
#define MAX_CLASSES 16

static const char *const scenes[] = {"tests/fixtures/faces/scene-crowd.png",  "tests/fixtures/faces/scene-empty.png",
                                     "models/samples/astronaut-collins.png",  "no/such/scene.png",
                                     "tests/fixtures/faces/scene-one.png",    "tests/fixtures/faces/scene-two-scales.png",
                                     "tests/fixtures/faces/scene-rotated.png", NULL};

typedef struct {
    const char *path;
    int face_index, face_count, faces_found, no_face, failed, has_crop;
    emote_face face;
    float probs[MAX_CLASSES];
} face_result;

typedef struct {
    int next, count, classes;
    face_result results[MAX_RESULTS];
} run_log;

static int next_scene(void *user, const char **path, const char **error) {
    run_log *l = user;
    (void)error;
    if (!scenes[l->next]) return 0;
    *path = scenes[l->next++];
    return 1;
}

static int keep_result(void *user, const emote_result *r) {
    run_log *l = user;
    if (l->count == MAX_RESULTS) return 0;
    face_result *f = &l->results[l->count++];
    *f = (face_result){.path = r->path, .face_index = r->face_index, .face_count = r->face_count,
                       .faces_found = r->faces_found, .no_face = r->no_face, .failed = r->error != NULL};
    if (r->face) f->face = *r->face;
    f->has_crop = r->crops && r->crops[r->face_index].pixels && r->crops[r->face_index].width > 0;
    if (r->probs) memcpy(f->probs, r->probs, (size_t)l->classes * sizeof(float));
    f->path = NULL; /* r->path is only valid during the call: the scene it names */
    for (int i = 0; scenes[i]; i++)
        if (strcmp(scenes[i], r->path) == 0) f->path = scenes[i];
    return 1;
}

static void run(const emote_model *m, emote_session *s, const emote_pipeline_options *o, run_log *l, int *failures) {
    memset(l, 0, sizeof *l);
    l->classes = emote_model_num_classes(m);
    emote_error err;
    emote_pipeline_counts counts;
    CHECKF(emote_pipeline_run(m, s, o, next_scene, keep_result, l, &counts, &err) == EMOTE_OK, "%s", err.message);
    CHECK(counts.done == l->count);
}

/* The faces emote_detect_faces finds in path (boxes clipped as the pipeline's), or -1. */
static int detect_directly(const emote_model *d, const char *path, emote_face **faces) {
    emote_image img;
    emote_error err;
    int n = -1;
    *faces = NULL;
    if (emote_image_load(path, &img, &err) != EMOTE_OK) return -1;
    if (emote_detect_faces(d, &img, NULL, faces, &n, &err) != EMOTE_OK) n = -1;
    for (int k = 0; k < n; k++) emote_face_clip(&(*faces)[k], img.width, img.height);
    emote_image_free(&img);
    return n;
}

/* Results in input order: each scene's faces as emote_detect_faces finds them, largest first. */
static void check_faces_and_order(const emote_model *d, const run_log *l, int *failures) {
    int at = 0;
    for (int i = 0; scenes[i]; i++) {
        emote_face *faces;
        int n = detect_directly(d, scenes[i], &faces);
        for (int k = 0; k < (n > 0 ? n : 1); k++, at++) {
            CHECKF(at < l->count, "%s: result %d missing", scenes[i], k);
            if (at >= l->count) break;
            const face_result *r = &l->results[at];
            CHECKF(r->path == scenes[i], "result %d: %s, expected %s", at, r->path ? r->path : "?", scenes[i]);
            CHECKF(r->face_index == k && r->face_count == (n > 0 ? n : 0), "%s: face %d of %d, expected %d of %d",
                   scenes[i], r->face_index, r->face_count, k, n);
            CHECK(r->failed == (n <= 0) && r->no_face == (n == 0));
            if (n > 0)
                CHECKF(memcmp(&r->face, &faces[k], sizeof faces[k]) == 0, "%s: face %d is not the detector's",
                       scenes[i], k);
        }
        free(faces);
    }
    CHECKF(at == l->count, "%d results, expected %d", l->count, at);
}

static void check_same(const run_log *a, const run_log *b, const char *what, int *failures) {
    CHECKF(a->count == b->count, "%s: %d results, not %d", what, b->count, a->count);
    for (int i = 0; i < a->count && i < b->count; i++)
        CHECKF(a->results[i].path == b->results[i].path && a->results[i].face_index == b->results[i].face_index &&
                   memcmp(a->results[i].probs, b->results[i].probs, sizeof a->results[i].probs) == 0,
               "%s: result %d differs", what, i);
}

typedef struct {
    emote_model *classifier, *detector;
    emote_session *session;
} face_models;

static bool open_models(face_models *fm, int *failures) {
    emote_error err;
    fm->classifier = emote_model_open(CLASSIFIER, &err);
    CHECKF(fm->classifier != NULL, "%s", err.message);
    fm->detector = emote_model_open(DETECTOR, &err);
    CHECKF(fm->detector != NULL, "%s", err.message);
    fm->session = fm->classifier ? emote_session_new(fm->classifier, 4, 2, &err) : NULL;
    return fm->session && fm->detector;
}

static void close_models(face_models *fm) {
    emote_session_free(fm->session);
    emote_model_close(fm->classifier);
    emote_model_close(fm->detector);
}

static int label_index(const emote_model *m, const char *name) {
    for (int k = 0; k < emote_model_num_classes(m); k++)
        if (strcmp(emote_model_label(m, k), name) == 0) return k;
    return -1;
}

TEST(pipeline_finds_faces_in_order_for_any_readers_batch_and_budget) {
    face_models fm;
    if (!open_models(&fm, failures)) return close_models(&fm);
    run_log *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    emote_pipeline_options o = {.batch = 4, .readers = 0, .detector = fm.detector};
    run(fm.classifier, fm.session, &o, a, failures);
    check_faces_and_order(fm.detector, a, failures);
    o.readers = 3;
    o.batch = 1;
    run(fm.classifier, fm.session, &o, b, failures);
    check_faces_and_order(fm.detector, b, failures);
    check_same(a, b, "3 readers, batch 1", failures);
    o.batch = 4;
    o.memory_budget = 1; /* each image alone */
    run(fm.classifier, fm.session, &o, b, failures);
    check_same(a, b, "a one-byte budget", failures);
    /* the sample photo's face is happy (README) */
    int happy = label_index(fm.classifier, "happy");
    for (int i = 0; i < a->count; i++)
        if (a->results[i].path == scenes[2])
            CHECKF(happy >= 0 && a->results[i].probs[happy] > 0.5f, "the sample's face: happy %.3f",
                   happy >= 0 ? (double)a->results[i].probs[happy] : 0.0);
    free(a);
    free(b);
    close_models(&fm);
}

TEST(pipeline_keeps_the_most_confident_faces_or_the_main_face) {
    face_models fm;
    if (!open_models(&fm, failures)) return close_models(&fm);
    run_log *l = malloc(sizeof *l);
    emote_detect_options detect = EMOTE_DETECT_DEFAULTS;
    detect.max_faces = 2;
    emote_pipeline_options o = {.batch = 4, .readers = 2, .detector = fm.detector, .detect = &detect, .keep_crops = 1};
    run(fm.classifier, fm.session, &o, l, failures);
    emote_face *faces;
    int crowd = detect_directly(fm.detector, scenes[0], &faces);
    free(faces);
    CHECKF(crowd > 2, "the crowd scene has %d faces", crowd);
    CHECK(l->count > 2 && l->results[0].face_count == 2 && l->results[0].faces_found == crowd &&
          l->results[1].face_index == 1 && l->results[2].path != scenes[0]);
    for (int i = 0; i < l->count; i++)
        CHECKF(l->results[i].has_crop == (l->results[i].face_count > 0), "result %d: crop %d", i, l->results[i].has_crop);
    o.main_face_only = 1;
    o.keep_crops = 0;
    run(fm.classifier, fm.session, &o, l, failures);
    for (int i = 0; i < l->count; i++) {
        const face_result *r = &l->results[i];
        CHECKF(r->face_count <= 1 && !r->has_crop, "%s: %d faces with main_face_only", r->path, r->face_count);
        int n = r->path ? detect_directly(fm.detector, r->path, &faces) : -1;
        if (n > 0) CHECKF(r->face.score == faces[emote_main_face(faces, n)].score, "%s: not the main face", r->path);
        if (n >= 0) free(faces);
    }
    free(l);
    close_models(&fm);
}
