/* Shared options, model loading and the batch classification loop used by every command. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

const char ENGINE_OPTIONS_HELP[] =
    "  -m, --model MODEL    a built-in model (fer2013, ferplus) or a model file\n"
    "                       (default: $EMOTE_MODEL, else fer2013)\n"
    "  -b, --batch N        images per forward pass (default 32)\n"
    "  -j, --threads N      worker threads (default 0 = one per CPU)\n"
    "      --tta            average each image with its mirror image\n"
    "  -0, --null           paths read from stdin ('-') end with NUL, not newline\n"
    "      --stdin-image    stdin holds one image's bytes; its record has path '-'\n"
    "      --no-exif        ignore a JPEG's EXIF orientation (default: turn photos upright)\n"
    "      --shard K/N      only the inputs whose path hashes to share K of N (1 <= K <= N)\n"
    "  -q, --quiet          no warnings on stderr (errors are still printed)\n"
    "      --progress       show progress on stderr even off a terminal or with -q\n"
    "      --no-progress    never show it (default: on a terminal, unless -q, once a run\n"
    "                       passes 2 s: done/total, images/s and ETA)\n";

bool parse_int_option(const char *opt, const char *value, int min, int max, int *out) {
    char *end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < min || v > max) {
        fprintf(stderr, "emote: %s needs an integer from %d to %d, not '%s'\n", opt, min, max, value ? value : "");
        return false;
    }
    *out = (int)v;
    return true;
}

bool parse_double_option(const char *opt, const char *value, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || !*value || *end || errno || !(v >= min && v <= max)) {
        fprintf(stderr, "emote: %s needs a number from %g to %g, not '%s'\n", opt, min, max, value ? value : "");
        return false;
    }
    *out = v;
    return true;
}

static bool parse_shard(const char *value, engine_options *o) {
    int k, n, used = 0;
    if (!value || sscanf(value, "%d/%d%n", &k, &n, &used) != 2 || value[used] || n < 1 || k < 1 || k > n) {
        fprintf(stderr, "emote: --shard needs K/N with 1 <= K <= N, not '%s'\n", value ? value : "");
        return false;
    }
    o->shard_index = k;
    o->shard_count = n;
    return true;
}

int parse_engine_option(engine_options *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    bool takes_value = true, ok = true;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        ok = value != NULL;
        if (!ok) fprintf(stderr, "emote: %s needs a file\n", a);
        o->model_path = value;
    } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
        ok = parse_int_option(a, value, 1, 4096, &o->batch);
    } else if (!strcmp(a, "-j") || !strcmp(a, "--threads")) {
        ok = parse_int_option(a, value, 0, 256, &o->threads);
    } else if (!strcmp(a, "--shard")) {
        ok = parse_shard(value, o);
    } else {
        takes_value = false;
        if (!strcmp(a, "--tta")) o->tta = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "-0") || !strcmp(a, "--null")) o->nul_separated = true;
        else if (!strcmp(a, "--stdin-image")) o->stdin_image = true;
        else if (!strcmp(a, "--no-exif")) o->no_exif = true;
        else if (!strcmp(a, "--progress")) o->progress = PROGRESS_ALWAYS;
        else if (!strcmp(a, "--no-progress")) o->progress = PROGRESS_NEVER;
        else return 0;
    }
    if (!ok) return -1;
    if (takes_value) ++*i;
    return 1;
}

bool engine_open(engine *e, const engine_options *o) {
    memset(e, 0, sizeof *e);
    e->options = o;
    emote_error err;
    const char *path = o->model_path ? o->model_path : getenv("EMOTE_MODEL");
    e->model = emote_model_open_any(path, &err);
    if (!e->model) {
        fprintf(stderr, "emote: %s\n", err.message);
        return false;
    }
    int classes = emote_model_num_classes(e->model);
    e->session = emote_session_new(e->model, o->batch, o->threads, &err);
    e->inputs = alloc_array(emote_input_floats(e->model), (size_t)o->batch * sizeof(float));
    e->probs = alloc_array((size_t)classes, (size_t)o->batch * sizeof(float));
    e->mirrored_probs = alloc_array((size_t)classes, (size_t)o->batch * sizeof(float));
    if (!e->session || !e->inputs || !e->probs || !e->mirrored_probs) {
        fprintf(stderr, "emote: %s\n", e->session ? "out of memory" : err.message);
        engine_close(e);
        return false;
    }
    return true;
}

void engine_close(engine *e) {
    emote_session_free(e->session);
    emote_model_close(e->model);
    free(e->inputs);
    free(e->probs);
    free(e->mirrored_probs);
    memset(e, 0, sizeof *e);
}

int top_label(const float *probs, int classes) {
    int best = 0;
    for (int k = 1; k < classes; k++)
        if (probs[k] > probs[best]) best = k;
    return best;
}

/* One batch of inputs on their way through the model, kept in input order. */
typedef struct {
    char *path;
    char error[EMOTE_ERROR_MAX];
    bool ok;
    int row; /* row in e->inputs when ok */
} slot;

/* A JPEG bigger than DECODE_MARGIN times the model's input is decoded at 1/2, 1/4 or 1/8
 * scale, as long as it stays at least that big: the resize to the input then still has
 * DECODE_MARGIN source pixels per output pixel (README, "Design notes"). */
#ifndef DECODE_MARGIN /* -DDECODE_MARGIN=0 decodes every JPEG at full size (for measurements) */
#define DECODE_MARGIN 4
#endif

static emote_status load_image(const engine *e, const char *path, emote_image *image, emote_error *err) {
    const emote_input_spec *in = emote_model_input(e->model);
    const emote_decode_options decode = {.min_width = DECODE_MARGIN * in->width,
                                         .min_height = DECODE_MARGIN * in->height,
                                         .ignore_orientation = e->options->no_exif};
    if (e->options->stdin_image && strcmp(path, "-") == 0) {
        unsigned char *data;
        size_t size;
        emote_status s = read_stream_all(stdin, "<stdin>", EMOTE_MAX_FILE_BYTES, &data, &size, err);
        if (s) return s;
        s = emote_image_decode_with(data, size, "<stdin>", &decode, image, err);
        free(data);
        return s;
    }
    return emote_image_load_with(path, &decode, image, err);
}

static void prepare_slot(engine *e, slot *s, const input_item *item, int *rows) {
    s->path = str_dup(item->path);
    s->ok = false;
    if (item->error) {
        snprintf(s->error, sizeof s->error, "%s", item->error);
        return;
    }
    emote_image image = {0};
    emote_error err;
    float *row = e->inputs + (size_t)*rows * emote_input_floats(e->model);
    if (load_image(e, item->path, &image, &err) || emote_preprocess(emote_model_input(e->model), &image, row, &err)) {
        snprintf(s->error, sizeof s->error, "%s", err.message);
    } else {
        s->ok = true;
        s->row = (*rows)++;
    }
    emote_image_free(&image);
}

static void mirror_inputs(const emote_model *m, float *inputs, int rows) {
    const emote_input_spec *in = emote_model_input(m);
    size_t lines = (size_t)rows * in->channels * in->height;
    for (size_t l = 0; l < lines; l++) {
        float *line = inputs + l * in->width;
        for (int a = 0, b = in->width - 1; a < b; a++, b--) {
            float t = line[a];
            line[a] = line[b];
            line[b] = t;
        }
    }
}

static bool run_batch(engine *e, int rows, char *error) {
    emote_error err;
    if (rows == 0) return true;
    if (emote_classify(e->session, e->inputs, rows, e->probs, &err)) {
        snprintf(error, EMOTE_ERROR_MAX, "%s", err.message);
        return false;
    }
    if (e->options->tta) {
        int classes = emote_model_num_classes(e->model);
        mirror_inputs(e->model, e->inputs, rows);
        if (emote_classify(e->session, e->inputs, rows, e->mirrored_probs, &err)) {
            snprintf(error, EMOTE_ERROR_MAX, "%s", err.message);
            return false;
        }
        for (size_t i = 0; i < (size_t)rows * classes; i++) e->probs[i] = (e->probs[i] + e->mirrored_probs[i]) / 2;
    }
    return true;
}

static bool all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

run_counts classify_inputs(engine *e, input_source *src, result_fn on_result, void *user) {
    run_counts counts = {0, 0};
    int batch = e->options->batch, classes = emote_model_num_classes(e->model);
    slot *slots = calloc_array((size_t)batch, sizeof(slot));
    if (!slots) {
        fprintf(stderr, "emote: out of memory\n");
        counts.failed = 1;
        return counts;
    }
    bool more = true, go_on = true;
    while (more && go_on) {
        int used = 0, rows = 0;
        input_item item;
        while (used < batch && (more = input_source_next(src, &item))) prepare_slot(e, &slots[used++], &item, &rows);
        char batch_error[EMOTE_ERROR_MAX];
        bool batch_ok = run_batch(e, rows, batch_error);
        for (int i = 0; i < used; i++) {
            slot *s = &slots[i];
            result r = {s->path ? s->path : "?", NULL, NULL};
            if (!s->path) r.error = "out of memory";
            else if (!s->ok) r.error = s->error;
            else if (!batch_ok) r.error = batch_error;
            else r.probs = e->probs + (size_t)s->row * classes;
            if (r.probs && !all_finite(r.probs, classes)) {
                format_message(s->error, sizeof s->error, "%s: model output is not finite", r.path);
                r.probs = NULL;
                r.error = s->error;
            }
            counts.done++;
            if (r.error) counts.failed++;
            if (go_on) go_on = on_result(user, &r);
            free(s->path);
            s->path = NULL;
        }
    }
    free(slots);
    return counts;
}
