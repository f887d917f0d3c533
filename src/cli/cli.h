/* The emote command line: shared pieces used by every command. */
#ifndef EMOTE_CLI_H
#define EMOTE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "emote.h"

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
    bool largest_only;      /* eval, sort: the largest face of each image, whatever --max-faces */
} faces_options;

#define FACES_OPTIONS_DEFAULT {false, false, 0.2f, 640, 32, NULL, false}

typedef struct {
    const char *model_path; /* -m / EMOTE_MODEL; NULL: built-in model */
    int batch;              /* -b */
    int threads;            /* -j, 0 = one per CPU */
    int readers;            /* --readers, -1 = default (one per CPU, at least 4) */
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

/* Parses an option shared by classify/eval/sort at argv[*i] (advancing *i past its value).
 * Returns 1 if handled, 0 if not an engine option, -1 on a bad value (message printed). */
int parse_engine_option(engine_options *o, int argc, char **argv, int *i);
extern const char ENGINE_OPTIONS_HELP[];

/* Value parsing with usage errors that name the option. */
bool parse_int_option(const char *opt, const char *value, int min, int max, int *out);
bool parse_double_option(const char *opt, const char *value, double min, double max, double *out);

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
void input_source_free(input_source *src);

bool has_image_extension(const char *path);
/* "dir/name" (no doubled slash), malloc'd; NULL when out of memory. */
char *join_path(const char *dir, const char *name);

/* ---- classification ------------------------------------------------------------ */

typedef struct {
    emote_model *detector; /* the built-in "yunet" with --faces, else NULL */
} faces_state;

int parse_faces_option(faces_options *f, int argc, char **argv, int *i);
bool faces_open(faces_state *st, const engine_options *o);
void faces_close(faces_state *st);
/* The most faces of one image that are classified: --max-faces, or 1 for eval and sort. */
int faces_limit(const faces_options *o);
/* Detects the faces of image, preprocesses each (aligned crop) into rows (room for
 * faces_limit), *faces: malloc'd, largest first. Says on stderr (unless -q) when the image
 * has more faces than --max-faces. Returns the face count, or -1 + err. */
int faces_prepare(const faces_state *st, const engine_options *eo, const emote_model *classifier, const char *path,
                  const emote_image *image, float *rows, emote_face **faces, emote_error *err);

typedef struct {
    emote_model *model;
    emote_session *session;
    const engine_options *options;
    faces_state faces; /* --faces: the detector */
    bool photo_hinted; /* the "try --faces" hint was given (once per run) */
} engine;

/* Opens the model (-m, EMOTE_MODEL or built-in) and plans the session; prints the error. */
bool engine_open(engine *e, const engine_options *o);
void engine_close(engine *e);

typedef struct {
    const char *path;
    const float *probs; /* num_classes probabilities, or NULL when error is set */
    const char *error;
    const emote_face *face; /* --faces: the face classified (NULL without --faces or when none) */
    int face_index;         /* 0 = the largest */
    bool no_face;           /* --faces found none: error is "no face found" */
} result;

/* Called once per input, in input order. Return false to stop early. */
typedef bool (*result_fn)(void *user, const result *r);

typedef struct {
    long done, failed;
} run_counts;

/* Classifies every input of src through the reading pipeline (src/pipeline.c) and
 * reports each result in input order. */
run_counts classify_inputs(engine *e, input_source *src, result_fn on_result, void *user);
/* The same, leaving out (before reading them) the inputs for which skip(skip_user, path) is true. */
typedef bool (*skip_fn)(void *user, const char *path);
/* --faces: classify_inputs_skipping's loop for faces (faces.c). */
run_counts classify_faces(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                          void *user);
run_counts classify_inputs_skipping(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                                    void *user);

/* --faces columns after path: face, box_x/y/w/h, face_score, 10 landmark coordinates. */
void faces_write_header(FILE *f, char sep);
void faces_write_columns(FILE *f, char sep, const result *r);
/* ,"face":N,"box":[x,y,w,h],"face_score":s,"landmarks":[...] (nothing without a face) */
void faces_write_json(FILE *f, const result *r);

/* Index of the largest probability. */
int top_label(const float *probs, int classes);

/* ---- output ------------------------------------------------------------------- */

typedef enum { FORMAT_AUTO, FORMAT_TABLE, FORMAT_TSV, FORMAT_CSV, FORMAT_JSONL, FORMAT_JSON } output_format;

bool parse_format(const char *name, output_format *out);
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
/* Writes s as a CSV field, quoted when needed. */
void csv_write_field(FILE *f, const char *s);

/* Re-executes with OPENBLAS_CORETYPE set when OpenBLAS fell back to generic kernels
 * on a CPU that has better ones (returns when nothing needs doing). */
void choose_blas_kernel(char **argv);
/* Stops OpenBLAS's own idle threads (see blas_kernel.c). */
void stop_blas_threads(void);

/* ---- commands ------------------------------------------------------------------ */

int cmd_classify(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sort(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_version(void);

#endif
