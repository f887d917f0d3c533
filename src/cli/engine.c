/* Shared options, model loading and the batch classification loop used by every command. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

const char ENGINE_OPTIONS_HELP[] =
    "  -m, --model MODEL    a built-in model (fer2013, ferplus, fer2013-faces) or a model\n"
    "                       file (default: $EMOTE_MODEL, else fer2013; with --faces,\n"
    "                       ferplus)\n"
    "  -b, --batch N        images per forward pass (default 32)\n"
    "  -j, --threads N      worker threads (default 0 = one per CPU)\n"
    "      --readers N      threads reading and decoding ahead of the model (default:\n"
    "                       two per CPU, 8 to 64; with --faces one per -j thread;\n"
    "                       0 = read between forward passes)\n"
    "      --tta            average each image with its mirror image\n"
    "  -0, --null           paths read from stdin ('-') end with NUL, not newline\n"
    "      --stdin-image    stdin holds one image's bytes; its record has path '-'\n"
    "      --no-exif        ignore a JPEG's EXIF orientation (default: turn photos upright)\n"
    "      --shard K/N      only the inputs whose path hashes to share K of N (1 <= K <= N)\n"
    "  -q, --quiet          no warnings on stderr (errors are still printed)\n"
    "      --progress       show progress on stderr even off a terminal or with -q\n"
    "      --no-progress    never show it (default: on a terminal, unless -q, once a run\n"
    "                       passes 2 s: done/total, images/s and ETA)\n"
    "      --faces          find the faces in each image (built-in YuNet detector) and classify\n"
    "                       each, aligned and cropped: one record per face, largest first;\n"
    "                       eval and sort use one face per image: the largest of those\n"
    "                       scoring within 0.2 of the most confident\n"
    "      --min-face-score S  detector score threshold, 0..1 (default 0.4: precision 0.98 on\n"
    "                       real photos, README; YuNet's reference uses 0.2)\n"
    "      --detect-size N  shrink each image to at most N pixels on its longer side for\n"
    "                       detection (default 640; boxes are reported in source pixels)\n"
    "      --max-faces N    at most N faces per image, the most confident (default 32)\n"
    "      --any-angle      also find faces lying sideways or upside down (the detector runs\n"
    "                       on the image turned 90, 180 and 270 degrees: about 4x the time)\n"
    "      --require-face   an image with no face counts as failed (exit status 1)\n"
    "      --save-crops DIR write each aligned face crop as DIR/<stem>.face<N>.png (an existing\n"
    "                       folder; a name holding another file makes it <stem>~2.face<N>.png)\n";

/* A decimal integer from 1 to INT_MAX at *s, ending at `end` ('\0' or '/'); *s moves past it. */
static bool parse_shard_number(const char **s, char end, int *out) {
    if (**s < '0' || **s > '9') return false; /* no sign, no space */
    char *stop;
    errno = 0;
    long v = strtol(*s, &stop, 10);
    if (errno || *stop != end || v < 1 || v > INT_MAX) return false;
    *out = (int)v;
    *s = stop + (end != '\0');
    return true;
}

static bool parse_shard(const char *value, engine_options *o) {
    int k, n;
    const char *s = value;
    if (!parse_shard_number(&s, '/', &k) || !parse_shard_number(&s, '\0', &n) || k > n) {
        fprintf(stderr, "emote: --shard needs K/N with 1 <= K <= N, not '%s'\n", value);
        return false;
    }
    o->shard_index = k;
    o->shard_count = n;
    return true;
}

/* --save-crops DIR: an existing folder, checked before any work is done. */
static bool crops_folder_usable(const char *option, const char *dir) {
    struct stat st;
    const char *why = !*dir ? NULL : stat(dir, &st) != 0 ? strerror(errno) : !S_ISDIR(st.st_mode) ? "not a folder" : "";
    if (why && !*why) return true;
    char message[EMOTE_ERROR_MAX];
    if (why) format_message(message, sizeof message, "%s: cannot save face crops there (%s): %s", dir, option, why);
    else format_message(message, sizeof message, "%s needs a folder", option);
    print_error(message);
    return false;
}

/* --faces with --tta or --stdin-image: a usage error, said as soon as both are given. */
static bool faces_combination_supported(const engine_options *o) {
    if (!o->faces.on || !(o->tta || o->stdin_image)) return true;
    fprintf(stderr, "emote: --faces does not yet work with %s\n", o->tta ? "--tta" : "--stdin-image");
    return false;
}

bool engine_option(engine_options *o, const option_parser *p, int code) {
    faces_options *f = &o->faces;
    double score;
    bool ok = true;
    switch (code) {
    case 'm': ok = parse_model_option(p->name, p->value, &o->model_path); break;
    case 'b': ok = parse_int_option(p->name, p->value, 1, 4096, &o->batch); break;
    case 'j': ok = parse_int_option(p->name, p->value, 0, 256, &o->threads); break;
    case OPT_READERS: ok = parse_int_option(p->name, p->value, 0, 256, &o->readers); break;
    case OPT_SHARD: ok = parse_shard(p->value, o); break;
    case OPT_TTA: o->tta = true; break;
    case 'q': o->quiet = true; break;
    case '0': o->nul_separated = true; break;
    case OPT_STDIN_IMAGE: o->stdin_image = true; break;
    case OPT_NO_EXIF: o->no_exif = true; break;
    case OPT_PROGRESS: o->progress = PROGRESS_ALWAYS; break;
    case OPT_NO_PROGRESS: o->progress = PROGRESS_NEVER; break;
    case OPT_FACES: f->on = true; break;
    case OPT_REQUIRE_FACE: f->require = true; break;
    case OPT_MIN_FACE_SCORE:
        if ((ok = parse_double_option(p->name, p->value, 0.0, 1.0, &score))) f->min_score = (float)score;
        break;
    case OPT_DETECT_SIZE: ok = parse_int_option(p->name, p->value, 32, 8192, &f->detect_size); break;
    case OPT_MAX_FACES: ok = parse_int_option(p->name, p->value, 1, 1024, &f->max_faces); break;
    case OPT_SAVE_CROPS: ok = crops_folder_usable(p->name, p->value); f->save_crops = p->value; break;
    case OPT_ANY_ANGLE: f->any_angle = true; break;
    default: return false;
    }
    return ok && faces_combination_supported(o);
}

/* --readers by default: reading waits on the disk or network as much as on a core. With
 * --faces a reader holds a whole photo while it searches it, which is CPU work: one per
 * thread (-j, or one per CPU), as many as can search at once, so memory stays that of -j photos. */
static int default_readers(const engine_options *o) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    if (o->faces.on) return o->threads > 0 ? o->threads : cpus > 64 ? 64 : (int)cpus;
    return cpus > 4 ? (cpus < 32 ? 2 * (int)cpus : 64) : 8;
}

void fit_engine_to_inputs(engine_options *o, char *const *paths, int count) {
    if (count < 1 || count >= o->batch || o->stdin_image) return;
    for (int i = 0; i < count; i++) {
        struct stat st;
        if (!strcmp(paths[i], "-") || (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))) return;
    }
    o->batch = count;
    /* One input is read where it is used: a reader thread would only hand it over, after
     * being started and scheduled (on a busy machine, milliseconds). */
    if (o->readers < 0 || o->readers > count) o->readers = count == 1 ? 0 : count;
}

/* --faces without -m or $EMOTE_MODEL: the classifier measured best on real photos (README
 * "Faces in photos"), when the binary has it; else NULL, the default model. */
static const char *faces_classifier(void) {
    for (int i = 0; emote_builtin_model_name(i); i++)
        if (!strcmp(emote_builtin_model_name(i), FACES_MODEL)) return FACES_MODEL;
    return NULL;
}

const char *engine_model_name(const engine_options *o) {
    const char *path = o->model_path ? o->model_path : getenv("EMOTE_MODEL");
    return !path && o->faces.on ? faces_classifier() : path;
}

/* $EMOTE_READ_MEMORY_MIB: the pipeline's memory budget in MiB (unset: the library's default). */
static bool read_memory_budget(size_t *bytes) {
    const char *value = getenv("EMOTE_READ_MEMORY_MIB");
    *bytes = 0;
    if (!value) return true;
    char *end;
    errno = 0;
    long mib = strtol(value, &end, 10);
    if (errno || end == value || *end || mib < 1 || mib > (1L << 30) / 1024 * 1024) {
        fprintf(stderr, "emote: EMOTE_READ_MEMORY_MIB needs a number of MiB from 1 to %ld, not '%s'\n",
                (1L << 30) / 1024 * 1024, value);
        return false;
    }
    *bytes = (size_t)mib << 20;
    return true;
}

bool engine_open(engine *e, const engine_options *o) {
    memset(e, 0, sizeof *e);
    e->options = o;
    if (!read_memory_budget(&e->memory_budget)) return false;
    emote_error err;
    e->model = emote_model_open_any(engine_model_name(o), &err);
    if (!e->model) {
        fprintf(stderr, "emote: %s\n", err.message);
        return false;
    }
    if (!faces_open(&e->faces, o)) {
        engine_close(e);
        return false;
    }
    e->session = emote_session_new(e->model, o->batch, o->threads, &err);
    if (!e->session) {
        fprintf(stderr, "emote: %s\n", err.message);
        engine_close(e);
        return false;
    }
    return true;
}

void engine_close(engine *e) {
    faces_close(&e->faces);
    emote_session_free(e->session);
    emote_model_close(e->model);
    memset(e, 0, sizeof *e);
}

int top_label(const float *probs, int classes) {
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (probs[k] > probs[best]) best = k;
    return best;
}

/* A JPEG bigger than DECODE_MARGIN times the model's input is decoded at 1/2, 1/4 or 1/8
 * scale, as long as it stays at least that big: the resize to the input then still has
 * DECODE_MARGIN source pixels per output pixel (README, "Images"). */
#ifndef DECODE_MARGIN /* -DDECODE_MARGIN=0 decodes every JPEG at full size (for measurements) */
#define DECODE_MARGIN 4
#endif

/* Without --faces, an input more than PHOTO_FACTOR times the model's input on a side is
 * most likely a photo, whose label (of the whole picture, shrunk) means little. */
#define PHOTO_FACTOR 4

typedef struct {
    engine *e;
    input_source *src;
    skip_fn skip;
    void *skip_user;
    result_fn on_result;
    void *user;
    run_counts counts;  /* inputs */
    bool input_failed;  /* the current input has had a failed record */
    int faces_left_out; /* records of the current input not to hand on (its crops could not be saved) */
    char error[EMOTE_ERROR_MAX];
} run_state;

static int next_input(void *user, const char **path, const char **error) {
    run_state *r = user;
    input_item item;
    do {
        if (!input_source_next(r->src, &item)) return 0;
    } while (!item.error && r->skip && r->skip(r->skip_user, item.path));
    *path = item.path;
    *error = item.error;
    return 1;
}

static int input_would_wait(void *user) { return input_source_would_wait(((run_state *)user)->src); }

static void hint_photo(engine *e, const emote_result *er) {
    const emote_input_spec *in = emote_model_input(e->model);
    if (e->photo_hinted || e->options->quiet ||
        (er->width <= PHOTO_FACTOR * in->width && er->height <= PHOTO_FACTOR * in->height))
        return;
    e->photo_hinted = true;
    char message[EMOTE_ERROR_MAX];
    format_message(message, sizeof message,
                   "%s is %dx%d, much larger than the model's %dx%d input: it looks like a photo; try --faces",
                   er->path, er->width, er->height, in->width, in->height);
    print_error(message);
}

/* At an image's first record with --faces: the --max-faces note, and its crops saved (in
 * input order); when they cannot be, the image gets one error record instead of its faces. */
static void start_face_input(run_state *r, emote_result *er) {
    const engine_options *o = r->e->options;
    faces_note_limit(o, er);
    if (er->error || faces_save_crops(&o->faces, er, r->error, sizeof r->error)) return;
    r->faces_left_out = er->face_count - 1;
    *er = (emote_result){.path = er->path, .error = r->error};
}

static int deliver(void *user, const emote_result *from) {
    run_state *r = user;
    emote_result er = *from;
    if (er.face_index == 0) {
        r->counts.done++;
        r->input_failed = false;
        r->faces_left_out = 0;
        if (r->e->options->faces.on) start_face_input(r, &er);
        else hint_photo(r->e, &er);
    } else if (r->faces_left_out-- > 0) {
        return 1;
    }
    if (er.error && (!er.no_face || r->e->options->faces.require) && !r->input_failed) {
        r->input_failed = true;
        r->counts.failed++;
    }
    result out = {.path = er.path, .probs = er.probs, .error = er.error, .face = er.face,
                  .face_index = er.face_index, .no_face = er.no_face, .features = er.features};
    return r->on_result(r->user, &out);
}

run_counts classify_inputs(engine *e, input_source *src, result_fn on_result, void *user) {
    return classify_inputs_skipping(e, src, NULL, NULL, on_result, user);
}

/* One path for plain and face inputs: the reading pipeline, with its face stage for --faces. */
run_counts classify_inputs_skipping(engine *e, input_source *src, skip_fn skip, void *skip_user, result_fn on_result,
                                    void *user) {
    const engine_options *o = e->options;
    const emote_input_spec *in = emote_model_input(e->model);
    emote_pipeline_options po = {.batch = o->batch,
                                 .readers = o->readers < 0 ? default_readers(o) : o->readers,
                                 .tta = o->tta,
                                 .dash_is_stdin_image = o->stdin_image,
                                 .input_would_wait = input_would_wait,
                                 .features = e->features,
                                 .memory_budget = e->memory_budget,
                                 .decode = {.min_width = DECODE_MARGIN * in->width,
                                            .min_height = DECODE_MARGIN * in->height,
                                            .ignore_orientation = o->no_exif}};
    emote_detect_options detect;
    if (o->faces.on) faces_pipeline_options(&e->faces, o, &po, &detect);
    run_state state = {.e = e, .src = src, .skip = skip, .skip_user = skip_user, .on_result = on_result, .user = user};
    emote_error err;
    if (emote_pipeline_run(e->model, e->session, &po, next_input, deliver, &state, NULL, &err)) {
        fprintf(stderr, "emote: %s\n", err.message);
        state.counts.failed++;
    }
    return state.counts;
}
