/* The emote command line: shared pieces used by every command. */
#ifndef EMOTE_CLI_H
#define EMOTE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "emote.h"
#include "options.h"

/* Exit statuses (documented in --help, emote.1 and README). */
enum {
    EXIT_ALL_OK = 0,
    EXIT_SOME_FAILED = 1,  /* some inputs could not be read or classified; the rest were */
    EXIT_USAGE = 2,        /* bad command line */
    EXIT_FATAL = 3,        /* nothing could be done: model unusable, output not writable, ... */
    EXIT_CHECK_FAILED = 4, /* a gate failed: eval --min-*, diff over its limits */
};

/* ---- options shared by the commands that classify ----------------------- */

/* --progress / --no-progress; see progress.h. */
typedef enum { PROGRESS_AUTO = -1, PROGRESS_NEVER = 0, PROGRESS_ALWAYS = 1 } progress_mode;

/* --faces and its options (faces.c). */
typedef struct {
    bool on, require;       /* --faces, --require-face */
    float min_score;        /* --min-face-score */
    int detect_size;        /* --detect-size */
    int max_faces;          /* --max-faces */
    const char *save_crops; /* --save-crops DIR */
    bool main_face_only;      /* eval, sort: one face per image (emote_main_face), whatever --max-faces */
    bool any_angle;         /* --any-angle */
} faces_options;

#define FACES_OPTIONS_DEFAULT {false, false, 0.4f, 640, 32, NULL, false, false}

typedef struct {
    const char *model_path; /* -m / EMOTE_MODEL; NULL: built-in model */
    int batch;              /* -b */
    int threads;            /* -j, 0 = one per CPU */
    int readers;            /* --readers, -1 = default (two per CPU, 8 to 64) */
    bool tta;               /* --tta: average with the mirrored image */
    bool quiet;             /* -q: no warnings on stderr (errors still go there) */
    bool nul_separated;     /* -0: paths on stdin end with NUL, not newline */
    bool stdin_image;       /* --stdin-image: stdin holds one image's bytes */
    bool no_exif;           /* --no-exif: keep JPEGs as stored, ignoring EXIF orientation */
    int shard_index, shard_count; /* --shard K/N (1-based K); count 0 = no sharding */
    progress_mode progress;       /* --progress, --no-progress */
    faces_options faces;          /* --faces ... */
} engine_options;

#define ENGINE_OPTIONS_DEFAULT {NULL, 32, 0, -1, false, false, false, false, false, 0, 0, PROGRESS_AUTO, FACES_OPTIONS_DEFAULT}

/* The options shared by classify, eval and sort, declared here once: their codes and the
 * entries that each of those commands' option tables includes (see options.h). */
enum {
    OPT_READERS = OPTION_LONG_ONLY, OPT_TTA, OPT_STDIN_IMAGE, OPT_NO_EXIF, OPT_SHARD, OPT_PROGRESS, OPT_NO_PROGRESS,
    OPT_FACES, OPT_MIN_FACE_SCORE, OPT_DETECT_SIZE, OPT_MAX_FACES, OPT_REQUIRE_FACE, OPT_SAVE_CROPS, OPT_ANY_ANGLE,
    OPTION_COMMAND /* a command's own long-only options are numbered from here */
};
#define ENGINE_OPTIONS                                                \
    {"model", required_argument, NULL, 'm'},                          \
    {"batch", required_argument, NULL, 'b'},                          \
    {"threads", required_argument, NULL, 'j'},                        \
    {"readers", required_argument, NULL, OPT_READERS},                \
    {"tta", no_argument, NULL, OPT_TTA},                              \
    {"null", no_argument, NULL, '0'},                                 \
    {"stdin-image", no_argument, NULL, OPT_STDIN_IMAGE},              \
    {"no-exif", no_argument, NULL, OPT_NO_EXIF},                      \
    {"shard", required_argument, NULL, OPT_SHARD},                    \
    {"quiet", no_argument, NULL, 'q'},                                \
    {"progress", no_argument, NULL, OPT_PROGRESS},                    \
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},              \
    {"faces", no_argument, NULL, OPT_FACES},                          \
    {"min-face-score", required_argument, NULL, OPT_MIN_FACE_SCORE},  \
    {"detect-size", required_argument, NULL, OPT_DETECT_SIZE},        \
    {"max-faces", required_argument, NULL, OPT_MAX_FACES},            \
    {"require-face", no_argument, NULL, OPT_REQUIRE_FACE},            \
    {"save-crops", required_argument, NULL, OPT_SAVE_CROPS},          \
    {"any-angle", no_argument, NULL, OPT_ANY_ANGLE}
extern const char ENGINE_OPTIONS_HELP[];

/* Applies the ENGINE_OPTIONS option that options_next returned. False on a bad value (message
 * printed) or any other code: OPTIONS_ERROR, whose message options_next printed. */
bool engine_option(engine_options *o, const option_parser *p, int code);

/* ---- inputs ------------------------------------------------------------------ */

/* Yields input paths in order: arguments as given, directories walked recursively in
 * byte order of names (only files with an image extension), "-" reads paths from stdin.
 * Memory stays bounded by the deepest directory listing, whatever the input count. */
typedef struct input_source input_source;

typedef struct {
    const char *path;  /* valid until the next call */
    const char *error; /* non-NULL: this input failed before decoding (unreadable directory...) */
} input_item;

input_source *input_source_new(char **paths, int count, const engine_options *o);
/* false at the end. Applies --shard. */
bool input_source_next(input_source *src, input_item *item);
/* True when input_source_next would now wait for a slow writer of paths on stdin. */
bool input_source_would_wait(const input_source *src);
void input_source_free(input_source *src);

bool has_image_extension(const char *path);
/* "dir/name" (no doubled slash), malloc'd; NULL when out of memory. */
char *join_path(const char *dir, const char *name);

/* ---- classification ------------------------------------------------------------ */

typedef struct {
    emote_model *detector; /* the built-in "yunet" with --faces, else NULL */
} faces_state;

bool faces_open(faces_state *st, const engine_options *o);
void faces_close(faces_state *st);
/* The pipeline's face stage for --faces and its options (detect: filled, pointed to by po). */
void faces_pipeline_options(const faces_state *st, const engine_options *eo, emote_pipeline_options *po,
                            emote_detect_options *detect);
/* Says on stderr (unless -q) when an image has more faces than --max-faces: at its first result. */
void faces_note_limit(const engine_options *eo, const emote_result *r);
/* --save-crops: writes the crops of r's image (face_count of them) under free names; false
 * with error when one cannot be written. */
bool faces_save_crops(const faces_options *o, const emote_result *r, char *error, size_t cap);
/* The built-in classifier --faces uses unless -m or $EMOTE_MODEL names one. */
#define FACES_MODEL "ferplus"
/* The error of an image's one record when --faces finds no face in it. */
#define NO_FACE_MESSAGE EMOTE_NO_FACE_MESSAGE

typedef struct {
    emote_model *model;
    emote_session *session;
    const engine_options *options;
    faces_state faces; /* --faces: the detector */
    bool photo_hinted; /* the "try --faces" hint was given (once per run) */
    bool features;     /* results carry features (emote_features) instead of probabilities (adapt) */
    size_t memory_budget; /* $EMOTE_READ_MEMORY_MIB in bytes; 0: the pipeline's default */
} engine;

/* When the inputs are fewer than a batch and all plain files (no directory, no '-'), sizes
 * the batch and the readers to them: one image in a process should not set up for 32 (nor
 * start a reader thread for itself). */
void fit_engine_to_inputs(engine_options *o, char *const *paths, int count);

/* The model that -m, $EMOTE_MODEL or --faces choose; NULL: the default built-in model. */
const char *engine_model_name(const engine_options *o);
/* Opens that model and plans the session; prints the error. */
bool engine_open(engine *e, const engine_options *o);
void engine_close(engine *e);

typedef struct {
    const char *path;
    const float *probs; /* num_classes probabilities, or NULL when error is set */
    const char *error;
    const emote_face *face; /* --faces: the face classified (NULL without --faces or when none) */
    int face_index;         /* 0 = the largest */
    bool no_face;           /* --faces found none: error is "no face found" */
    const float *features;  /* engine.features: the features (twice with --tta: then the mirror's) */
} result;

/* Called once per input, in input order. Return false to stop early. */
typedef bool (*result_fn)(void *user, const result *r);

typedef struct {
    long done, failed;
} run_counts;

/* Classifies every input of src through the reading pipeline (src/pipeline.c; with --faces,
 * its face stage) and reports each result in input order: one per input, or per face.
 * Counts inputs: done, and failed (an error record; "no face found" only with --require-face). */
run_counts classify_inputs(engine *e, input_source *src, result_fn on_result, void *user);
/* The same, leaving out (before reading them) the inputs for which skip(skip_user, path) is true. */
typedef bool (*skip_fn)(void *user, const char *path);
run_counts classify_inputs_skipping(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                                    void *user);

/* --faces columns after path: face, box_x/y/w/h, face_score, 10 landmark coordinates. */
#define FACE_COLUMNS 16
void faces_write_header(FILE *f, char sep);
void faces_write_columns(FILE *f, char sep, const result *r);
/* ,"face":N,"box":[x,y,w,h],"face_score":s,"landmarks":[...] (nothing without a face) */
void faces_write_json(FILE *f, const result *r);

/* Index of the largest probability. */
int top_label(const float *probs, int classes);

/* ---- output ------------------------------------------------------------------- */

typedef enum { FORMAT_AUTO, FORMAT_TABLE, FORMAT_TSV, FORMAT_CSV, FORMAT_JSONL, FORMAT_JSON } output_format;

bool parse_format(const char *name, output_format *out);
/* -f of the commands that print one report (eval, diff, info): text or json; false after
 * printing the usage error. */
bool parse_report_format(const option_parser *p, output_format *out);
/* Writes s as a JSON string literal (with quotes), always valid UTF-8: control
 * characters escaped, each byte that is not part of a UTF-8 character as \ufffd. */
void json_write_string(FILE *f, const char *s);
/* Writes "key":"path" and, when path is not valid UTF-8, "key_hex":"<its bytes in hex>"
 * so that the exact path can be recovered. */
void json_write_path(FILE *f, const char *key, const char *path);
/* Writes s for people: control characters as \n, \t, \r or \xHH, and each byte that is
 * not part of a UTF-8 character as \xHH, so that one record stays one line. */
void text_write_escaped(FILE *f, const char *s);
/* "emote: MESSAGE" on stderr, escaped as text_write_escaped does. */
void print_error(const char *message);
/* The same, formatted (format_message: a long leading name is shortened). */
void print_errorf(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* "emote: PATH: MESSAGE" for an input that failed; the path once, as most messages (the
 * decoders') already begin with it and some ("no face found") do not. */
void print_input_error(const char *path, const char *message);
/* Writes s as a CSV field, quoted when needed. */
void csv_write_field(FILE *f, const char *s);

/* Re-executes with OPENBLAS_CORETYPE set when OpenBLAS fell back to generic kernels
 * on a CPU that has better ones (returns when nothing needs doing). */
void choose_blas_kernel(char **argv);
/* Stops OpenBLAS's own idle threads (see blas_kernel.c). */
void stop_blas_threads(void);

/* ---- commands ------------------------------------------------------------------ */

/* Each in its file, with its option table (the list is options.c's COMMANDS). */
extern const command classify_command, eval_command, sort_command, diff_command, info_command, adapt_command;
int cmd_version(void);

#endif
