/* libemote: facial expression classification with a serialized CNN.
 *
 * Errors are values: functions that can fail return NULL or a non-zero
 * emote_status and fill an emote_error whose message names the file and reason.
 *
 * Contract: every entry point checks its arguments and answers a bad one with
 * EMOTE_ERR_ARGUMENT (or NULL) and a reason, never a crash. A pointer may be NULL only
 * where its comment says so; `err` may always be NULL (no message then). The accessors
 * (emote_model_*, emote_session_*) answer NULL or 0 for a NULL model or session. Images
 * given to the library (emote_image) must have pixels, 1..4 channels and 1 to
 * EMOTE_MAX_PIXELS pixels. Sizes that a buffer must have (inputs, probs, outputs) cannot be
 * checked: they are stated with each function and are the caller's part.
 *
 * Typical use:
 *   emote_error err;
 *   emote_model *m = emote_model_open("model.safetensors", &err);
 *   emote_session *s = emote_session_new(m, 32, 0, &err);
 *   float *in = malloc(emote_input_floats(m) * n * sizeof(float));
 *   ... emote_image_load() + emote_preprocess() each image into in ...
 *   emote_classify(s, in, n, probs, &err);     probs: n * emote_model_num_classes(m)
 */
#ifndef EMOTE_H
#define EMOTE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMOTE_ERROR_MAX 512

typedef struct {
    char message[EMOTE_ERROR_MAX];
} emote_error;

typedef enum {
    EMOTE_OK = 0,
    EMOTE_ERR_IO,        /* cannot open/read/write a file */
    EMOTE_ERR_FORMAT,    /* a file is not what it claims (bad image, bad model file) */
    EMOTE_ERR_LIMIT,     /* a documented size limit was exceeded */
    EMOTE_ERR_MEMORY,    /* allocation failed */
    EMOTE_ERR_ARGUMENT,  /* a caller passed something invalid */
} emote_status;

/* ---- model ------------------------------------------------------------- */

typedef struct emote_model emote_model;

typedef enum { EMOTE_GRAY_BT601 = 0 } emote_gray_method;

typedef struct {
    int channels, height, width;   /* model input, e.g. 1 x 48 x 48 */
    float mean[3], std[3];         /* per channel, applied to pixel / 255 */
} emote_input_spec;

/* Opens and fully validates a safetensors model file. NULL + err on failure. */
emote_model *emote_model_open(const char *path, emote_error *err);
/* Same from memory (copied): data must not be NULL; `name` is used in messages (NULL:
 * "<memory>"). */
emote_model *emote_model_open_memory(const void *data, size_t size, const char *name, emote_error *err);
/* The default model compiled into the binary, or NULL if this build has none. */
emote_model *emote_model_open_builtin(emote_error *err);
/* A built-in model by name ("fer2013", "ferplus"), or NULL + err. */
emote_model *emote_model_open_builtin_named(const char *name, emote_error *err);
/* The name of built-in model `index` (0 = the default), NULL past the last. */
const char *emote_builtin_model_name(int index);
/* A built-in model's name, else a model file's path; NULL or "" = the default built-in. */
emote_model *emote_model_open_any(const char *name_or_path, emote_error *err);
void emote_model_close(emote_model *model);

const char *emote_model_name(const emote_model *model);     /* path or "built-in" */
int emote_model_num_classes(const emote_model *model);
const char *emote_model_label(const emote_model *model, int index);
const emote_input_spec *emote_model_input(const emote_model *model);
size_t emote_input_floats(const emote_model *model);         /* channels * height * width */
/* A raw __metadata__ value (a JSON string for the structured keys), or NULL. */
const char *emote_model_metadata(const emote_model *model, const char *key);
uint64_t emote_model_param_count(const emote_model *model);
uint64_t emote_model_macs(const emote_model *model);         /* multiply-adds per image */

/* Number of ops in the graph and a short description of op i ("conv2d 3x3/1 32->64 @48x48"). */
int emote_model_num_ops(const emote_model *model);
const char *emote_model_op_kind(const emote_model *model, int op);

/* ---- inference ----------------------------------------------------------- */

typedef struct emote_session emote_session;

/* Plans every buffer for batches of up to max_batch (1..65536) images of `model` (a
 * classifier, not NULL; it must outlive the session, which is bound to it), run by `threads`
 * (0..256) worker threads (each takes a share of the images; 0 = one per online CPU). Results are
 * bitwise identical whatever the batch size, position in the batch or thread count.
 * Sets OpenBLAS to one thread per call, process-wide: the workers are the parallelism. */
emote_session *emote_session_new(const emote_model *model, int max_batch, int threads, emote_error *err);
void emote_session_free(emote_session *session);   /* NULL: nothing */
const emote_model *emote_session_model(const emote_session *session); /* the model it runs */
int emote_session_max_batch(const emote_session *session);

/* inputs: n (1..max_batch) preprocessed images, each channels*height*width floats (CHW).
 * probs: n * num_classes floats, softmax probabilities in label order. None may be NULL. */
emote_status emote_classify(emote_session *session, const float *inputs, int n, float *probs,
                            emote_error *err);

/* ---- features and adapted models (emote adapt) ----------------------------- */

/* The size of a classifier's features: the activations that feed its last dense layer (the
 * op right before the final softmax). 0 when the graph does not end with linear + softmax. */
int emote_model_feature_size(const emote_model *model);

/* Like emote_classify, but stops before the last dense layer. features: n *
 * emote_model_feature_size(model) floats, one row per image. Bitwise the same whatever the
 * batch size, position in the batch or thread count, as emote_classify's probabilities. */
emote_status emote_features(emote_session *session, const float *inputs, int n, float *features,
                            emote_error *err);

/* A new head for a model: the last dense layer replaced by weight (classes x
 * emote_model_feature_size rows, row-major) and bias, with new labels. metadata: entries set
 * in the written file's __metadata__ (added, or replacing the base's; a NULL value removes
 * the base's entry). "format", "labels", "graph" and "input" cannot be set this way. */
typedef struct {
    int classes;
    const char *const *labels;
    const float *weight, *bias;
    int num_metadata;
    const char *const *metadata_keys, *const *metadata_values;
} emote_head;

/* Writes base's graph and weights with head in place of its last dense layer, as a model
 * file at path: every other tensor byte for byte as in base's file. Written to a temporary
 * file in path's folder, synced, then renamed over path (replace non-zero) or linked to it
 * (replace 0: fails with EMOTE_ERR_IO when path exists), so a reader never sees half a file.
 * The result is opened with every check before it is written. */
emote_status emote_model_write_head(const emote_model *base, const emote_head *head, const char *path, int replace,
                                    emote_error *err);
/* The same into memory: *data (malloc'd, free()) holds *size bytes of model file. */
emote_status emote_model_serialize_head(const emote_model *base, const emote_head *head, unsigned char **data,
                                        size_t *size, emote_error *err);
/* The SHA-256 of the model's file as loaded (the file, or the built-in model's bytes), as 64
 * lowercase hex digits and a NUL. */
void emote_model_sha256(const emote_model *model, char hex[65]);

/* Called after each graph op with its output in NCHW order (n images, c channels,
 * h x w; h = w = 1 for vectors). For parity tests and debugging; while set, batches
 * run on one thread. NULL disables. */
typedef void (*emote_trace_fn)(void *user, int op, const char *kind, const float *nchw,
                               int n, int c, int h, int w);
void emote_session_set_trace(emote_session *session, emote_trace_fn fn, void *user);

/* ---- multi-output models (the face detector) ------------------------------ */

/* A model with named outputs (metadata "outputs") runs one image at a time, at any height
 * and width that are multiples of emote_model_size_multiple() (0: only the nominal
 * input size), through emote_model_run; emote_session_new refuses it. */
int emote_model_num_outputs(const emote_model *model);            /* 0 for a classifier */
const char *emote_model_output_name(const emote_model *model, int index);
int emote_model_size_multiple(const emote_model *model);

typedef struct {
    int channels, height, width;
    float *data;                   /* CHW, owned: emote_tensors_free */
} emote_tensor;

/* model: a multi-output model; input: channels x height x width floats, already normalised
 * (CHW); height and width as emote_model_size_multiple says. Fills
 * outputs[emote_model_num_outputs(model)]. None may be NULL. Thread-safe: the model's weights are
 * only read; the model keeps one run's scratch buffers (at most 64 MiB) for its next run, taken
 * and put back atomically (a run that finds them taken allocates its own), until
 * emote_model_close. */
emote_status emote_model_run(const emote_model *model, const float *input, int height, int width,
                             emote_tensor *outputs, emote_error *err);
void emote_tensors_free(emote_tensor *tensors, int n); /* NULL: nothing */

/* ---- images ------------------------------------------------------------ */

/* Largest image accepted, in pixels (width * height), checked before decoding. */
#define EMOTE_MAX_PIXELS (40u * 1000u * 1000u)
/* Largest encoded image file accepted, in bytes. */
#define EMOTE_MAX_FILE_BYTES (256u * 1024u * 1024u)

typedef struct {
    int width, height, channels;   /* channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    unsigned char *pixels;         /* row-major, interleaved, owned */
    /* Decoded images: the size the file states, upright; larger than width x height after
     * a scaled JPEG decode (emote_decode_options.min_width). 0 for images made otherwise. */
    int source_width, source_height;
} emote_image;

/* How to decode. Zeroed (or NULL) = full size, EXIF orientation applied. */
typedef struct {
    /* JPEG only: decode at 1/2, 1/4 or 1/8 scale (in the DCT domain, much faster) when
     * the upright result still has at least min_width x min_height pixels; 0 = full size. */
    int min_width, min_height;
    /* Non-zero: keep the pixels as stored, ignoring a JPEG's EXIF orientation. */
    int ignore_orientation;
    /* Refuse images with more pixels than this (checked from the header); 0 or more
     * than EMOTE_MAX_PIXELS = EMOTE_MAX_PIXELS. */
    uint32_t max_pixels;
} emote_decode_options;

/* Decodes PNG, JPEG, BMP, GIF (first frame) and binary PNM (P5/P6); the magic bytes
 * decide, other formats are refused. Truncated files are errors. JPEG goes through
 * libjpeg-turbo, the rest through stb_image. The result is upright (EXIF orientation). */
emote_status emote_image_load(const char *path, emote_image *image, emote_error *err);
emote_status emote_image_decode(const void *data, size_t size, const char *name, emote_image *image,
                                emote_error *err);
emote_status emote_image_load_with(const char *path, const emote_decode_options *options, emote_image *image,
                                   emote_error *err);
emote_status emote_image_decode_with(const void *data, size_t size, const char *name,
                                     const emote_decode_options *options, emote_image *image, emote_error *err);
void emote_image_free(emote_image *image);

/* Resizes to width x height (stb_image_resize2, Mitchell when shrinking, Catmull-Rom when
 * enlarging, edges clamped), same channels; out->pixels is owned by the caller. */
emote_status emote_image_resize(const emote_image *image, int width, int height, emote_image *out,
                                emote_error *err);

/* crop -> channel conversion -> resize -> normalise into out (CHW floats,
 * emote_input_floats(model) of them). See README "Preprocessing". */
emote_status emote_preprocess(const emote_input_spec *spec, const emote_image *image, float *out,
                              emote_error *err);


/* ---- faces ------------------------------------------------------------- */

/* A face in source-image pixels: box (x, y) top-left, w x h; score 0..1; five landmarks
 * (x, y each): right eye, left eye, nose tip, right and left mouth corners (the person's
 * right, i.e. on the image's left). */
typedef struct {
    float x, y, w, h, score;
    float landmarks[10];
} emote_face;

typedef struct {
    float min_score;  /* candidates below are dropped (YuNet's reference: 0.2) */
    float nms_iou;    /* boxes overlapping a better one by more are dropped (0.45) */
    int detect_size;  /* the image is shrunk to at most this on its longer side; 0 = never */
    int max_faces;    /* at most this many faces, the most confident (emote_keep_best_faces); 0 = no limit */
    int any_angle;    /* nonzero: also search the image turned by 90, 180 and 270 degrees (4x the work),
                         for faces lying sideways or upside down; boxes merged by NMS */
} emote_detect_options;

#define EMOTE_DETECT_DEFAULTS {0.2f, 0.45f, 640, 0, 0}

/* Finds faces with a detector model (the built-in "yunet"): gray, gray+alpha, RGB and RGBA
 * images of any size. *faces (malloc'd, free()) holds *count faces, largest first. A box is
 * the detector's: it may reach past the image's edges (a face cut by the edge keeps its
 * centre and size, which emote_face_crop needs); emote_face_clip bounds it for display.
 * options may be NULL (EMOTE_DETECT_DEFAULTS); detector, image, faces and count may not. */
emote_status emote_detect_faces(const emote_model *detector, const emote_image *image,
                                const emote_detect_options *options, emote_face **faces, int *count,
                                emote_error *err);

/* Keeps the `keep` most confident of count faces (a larger box breaks a tie in score), in
 * place, ordered largest first; returns how many are kept (0 when faces is NULL). */
int emote_keep_best_faces(emote_face *faces, int count, int keep);

/* The face that stands for a whole image (eval --faces, sort --faces): the largest of the
 * faces scoring within EMOTE_MAIN_FACE_MARGIN of the best one, so that a large box the
 * detector is unsure of (a wall, a hand) cannot outrank a clear face. -1 when count < 1
 * or faces is NULL. */
int emote_main_face(const emote_face *faces, int count);
#define EMOTE_MAIN_FACE_MARGIN 0.2f

/* The box limited to a width x height image (landmarks are left as they are); NULL: nothing. */
void emote_face_clip(emote_face *face, int width, int height);

/* The face as a size x size (1..4096) crop of side scale (0..16] * the box's longer side
 * around the box centre, rotated so that the eyes are level to within EMOTE_FACE_LEVEL_DEGREES: a face
 * tilted by less is left as it is, as the classifiers were trained on such faces (same
 * channels as image; out->pixels owned). image, face and out must not be NULL. */
emote_status emote_face_crop(const emote_image *image, const emote_face *face, float scale, int size,
                             emote_image *out, emote_error *err);
#define EMOTE_FACE_LEVEL_DEGREES 15.0f
/* The crops classified per face, at 0.9, 1 and 1.1 times EMOTE_FACE_CROP_SCALE, their
 * probabilities averaged (emote_pipeline_options.detector). */
#define EMOTE_FACE_FRAMINGS 3
/* The crop scale emote uses; the pipeline averages the classifier over 0.9, 1 and 1.1 times it
 * (README "Faces in photos", tools/framing_study.py). A build may override it with
 * -DEMOTE_FACE_CROP_SCALE=... */
#ifndef EMOTE_FACE_CROP_SCALE
#define EMOTE_FACE_CROP_SCALE 1.0f
#endif

/* ---- pipeline ------------------------------------------------------------ */

/* Reads, decodes and preprocesses inputs on reader threads ahead of the forward pass and
 * hands back one result per input (with a detector: per face), in input order. The queue
 * between them holds at most depth * batch inputs, each one preprocessed tensor
 * (emote_input_floats floats; with a detector, EMOTE_FACE_FRAMINGS per face) plus its path and
 * a message buffer (EMOTE_ERROR_MAX bytes). Each reader decodes one image at a time, and
 * the readers together hold at most memory_budget bytes of images being decoded and
 * processed (an image larger than the budget is read alone). Results are bitwise those of
 * emote_classify on the same images, whatever the batch, readers and threads. */
/* Optional: non-zero when the next call of the input function would wait for its caller's
 * producer (a slow writer on a pipe). */
typedef int (*emote_input_waits_fn)(void *user);

typedef struct {
    int batch;   /* images per forward pass, 1..the session's max_batch */
    int readers; /* reader threads; 0 = read on the calling thread between passes */
    int depth;   /* batches queued ahead of the forward pass; 0 = 4 */
    int tta;     /* non-zero: average each image with its mirror image */
    int dash_is_stdin_image; /* non-zero: the path "-" names one image's bytes on stdin */
    emote_decode_options decode;
    /* Before asking for an input that would wait, the pipeline hands out every input it has
     * read, in a smaller batch if need be, so that results stream. NULL: inputs never wait. */
    emote_input_waits_fn input_would_wait;
    /* non-zero: results carry the image's features (emote_features) instead of its
     * probabilities; with tta, the image's and then its mirror image's, one after the other */
    int features;
    /* Bytes of images in flight across the readers: the file, its decoded pixels (4 bytes
     * each, as many as the header states) and the preprocessing's float copy of a whole
     * image. A reader waits for room before decoding; 0 = EMOTE_PIPELINE_MEMORY_BUDGET. */
    size_t memory_budget;
    /* Faces: a face detector (the built-in "yunet") finds each image's faces on the reader
     * threads (emote_detect_faces with *detect; NULL: EMOTE_DETECT_DEFAULTS), keeps its
     * max_faces most confident (0: all; or only the main face, emote_main_face, with
     * main_face_only), crops each (emote_face_crop) at EMOTE_FACE_FRAMINGS scales around
     * EMOTE_FACE_CROP_SCALE and preprocesses the crops; the forward pass classifies them in
     * batches that grow with the faces found and averages each face's. Images are decoded at
     * full size (decode.min_width/min_height are ignored), so that boxes are in source pixels.
     * NULL: whole images are classified. */
    const emote_model *detector;
    const emote_detect_options *detect;
    int main_face_only;
    int keep_crops; /* with a detector: results carry each face's crop at scale 1 (crops) */
} emote_pipeline_options;

#define EMOTE_PIPELINE_MEMORY_BUDGET ((size_t)256 << 20)
#define EMOTE_NO_FACE_MESSAGE "no face found"

typedef struct {
    const char *path;   /* as the input function gave it */
    const float *probs; /* num_classes probabilities; NULL when error is set */
    const char *error;  /* why this input failed */
    int width, height;  /* the image's size as its file states it, upright; 0 if not decoded */
    /* options.features: emote_model_feature_size floats (twice that with tta); else NULL */
    const float *features;
    /* With a detector: one result per face kept, largest first, or one with no_face set
     * and error "no face found" when the image has none (or an error, if it failed). */
    const emote_face *face;  /* the face classified (faces + face_index), box clipped to the image */
    const emote_face *faces; /* all of the image's face_count faces, the same in each of its results */
    int face_index, face_count;
    int faces_found;          /* faces the detector found, before max_faces or main_face_only */
    int no_face;              /* the image has no face: error is EMOTE_NO_FACE_MESSAGE */
    const emote_image *crops; /* options.keep_crops: face_count crops, one per face, at scale 1 */
} emote_result;

/* Next input in order: sets *path (copied before the next call) and returns 1, or returns
 * 0 at the end. Setting *error as well marks an input that failed before reading (the
 * message is copied); its result carries that error. Called on the caller's thread. */
typedef int (*emote_input_fn)(void *user, const char **path, const char **error);
/* Called once per result, in input order, on the caller's thread; return 0 to stop. */
typedef int (*emote_result_fn)(void *user, const emote_result *result);

typedef struct {
    long done, failed; /* results handed out, and how many of them carry an error ("no face found" too) */
} emote_pipeline_counts;

/* Runs every input through model and session: the session must be one made for this model
 * (emote_session_new(model, ...)) with max_batch >= options->batch; model, session, options,
 * next and on_result must not be NULL; user and counts may be. Fails only when nothing can
 * start (bad arguments, out of memory, no threads); per-input failures are results. */
emote_status emote_pipeline_run(const emote_model *model, emote_session *session,
                                const emote_pipeline_options *options, emote_input_fn next,
                                emote_result_fn on_result, void *user, emote_pipeline_counts *counts,
                                emote_error *err);

#ifdef __cplusplus
}
#endif
#endif
