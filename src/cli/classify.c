/* emote classify: one record per input, in input order, flushed as produced. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin_models.h"
#include "cli.h"
#include "progress.h"
#include "record_file.h"

static const char usage[] =
    "usage: emote [classify] [options] PATH...\n"
    "\n"
    "Classifies face crops. PATH is an image file, a directory (walked recursively, files\n"
    "with an image extension, in sorted order) or '-' to read paths from stdin.\n"
    "\n"
    "  -f, --format F       table | tsv | csv | jsonl (default: table on a terminal, else tsv)\n"
    "  -k, --top K          also list the K most likely labels (table default 3)\n"
    "      --no-header      no header line in tsv/csv\n"
    "  -o, --output FILE    write the records to FILE (refused if it exists and is not\n"
    "                       empty, unless --resume)\n"
    "      --resume         continue FILE of an interrupted run: keep its complete records,\n"
    "                       retry its error records, classify only the inputs it lacks\n"
    "                       (FILE must be a regular file of this model and these options,\n"
    "                       as .FILE.emote-run beside it records)\n"
    "%s"
    "  -h, --help           this help\n"
    "\n"
    "Records: tsv/csv columns are path, label, confidence, then one probability per label\n"
    "(or top1_label, top1_prob, ... with --top), then error. jsonl: {\"path\", \"label\",\n"
    "\"confidence\", \"probs\": {label: p}, [\"top\"]} or {\"path\", \"error\"}.\n"
    "\n"
    "Exit status: 0 all inputs classified; 1 some inputs failed (each is reported, the rest\n"
    "are classified); 2 usage error; 3 fatal (model unusable, no inputs, -o FILE refused,\n"
    "not writable or in use by another run).\n"
    "\n"
    "Examples:\n"
    "  emote face.png\n"
    "  emote -f jsonl photos/ > predictions.jsonl\n"
    "  find crops -name '*.jpg' -print0 | emote -0 -f csv - > labels.csv\n"
    "  emote --stdin-image < face.jpg\n"
    "  emote -f jsonl -o labels.jsonl --resume photos/   # run again after a kill\n";

typedef struct {
    const emote_model *model;
    output_format format;
    int top;
    bool header;
    bool faces;     /* --faces: face columns after path */
    int *order;     /* label indices by falling probability */
    int path_width; /* table: the widest path so far (up to 80), so that columns line up */
    FILE *out;      /* stdout, or -o FILE */
    progress_bar progress;
} writer;

static void sort_labels(const float *probs, int classes, int *order) {
    for (int i = 0; i < classes; i++) order[i] = i;
    for (int i = 1; i < classes; i++) { /* insertion sort, stable: ties keep label order */
        int v = order[i], j = i;
        for (; j > 0 && probs[order[j - 1]] < probs[v]; j--) order[j] = order[j - 1];
        order[j] = v;
    }
}

static void write_header(const writer *w) {
    char sep = w->format == FORMAT_CSV ? ',' : '\t';
    int classes = emote_model_num_classes(w->model);
    fputs("path", w->out);
    if (w->faces) faces_write_header(w->out, sep);
    fprintf(w->out, "%clabel%cconfidence", sep, sep);
    if (w->top) {
        for (int k = 1; k <= w->top; k++) fprintf(w->out, "%ctop%d_label%ctop%d_prob", sep, k, sep, k);
    } else {
        for (int k = 0; k < classes; k++) fprintf(w->out, "%c%s", sep, emote_model_label(w->model, k));
    }
    fprintf(w->out, "%cerror\n", sep);
}

/* A tsv field: tabs and newlines in paths or messages become spaces. */
static void tsv_write_field(FILE *f, const char *s) {
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

/* The record's first field, its path; what --resume looks records up by. */
static void write_path_field(const writer *w, FILE *f, const char *path) {
    if (w->format == FORMAT_JSONL) {
        fputc('{', f);
        json_write_path(f, "path", path);
    } else if (w->format == FORMAT_CSV) {
        csv_write_field(f, path);
    } else {
        tsv_write_field(f, path);
    }
}

static void write_delimited(const writer *w, const result *r) {
    bool csv = w->format == FORMAT_CSV;
    char sep = csv ? ',' : '\t';
    int classes = emote_model_num_classes(w->model);
    int columns = w->top ? 2 * w->top : classes;
    void (*field)(FILE *, const char *) = csv ? csv_write_field : tsv_write_field;
    write_path_field(w, w->out, r->path);
    if (w->faces) faces_write_columns(w->out, sep, r);
    if (r->error) {
        fprintf(w->out, "%c%c", sep, sep);
        for (int k = 0; k < columns; k++) fputc(sep, w->out);
        fputc(sep, w->out);
        field(w->out, r->error);
        fputc('\n', w->out);
        return;
    }
    int best = w->order[0];
    fprintf(w->out, "%c%s%c%.9g", sep, emote_model_label(w->model, best), sep, (double)r->probs[best]);
    if (w->top) {
        for (int k = 0; k < w->top; k++)
            fprintf(w->out, "%c%s%c%.9g", sep, emote_model_label(w->model, w->order[k]), sep, (double)r->probs[w->order[k]]);
    } else {
        for (int k = 0; k < classes; k++) fprintf(w->out, "%c%.9g", sep, (double)r->probs[k]);
    }
    fprintf(w->out, "%c\n", sep);
}

static void write_jsonl(const writer *w, const result *r) {
    int classes = emote_model_num_classes(w->model);
    write_path_field(w, w->out, r->path);
    faces_write_json(w->out, r);
    if (r->error) {
        fputs(",\"error\":", w->out);
        json_write_string(w->out, r->error);
        fputs("}\n", w->out);
        return;
    }
    fprintf(w->out, ",\"label\":\"%s\",\"confidence\":%.9g,\"probs\":{", emote_model_label(w->model, w->order[0]),
           (double)r->probs[w->order[0]]);
    for (int k = 0; k < classes; k++) fprintf(w->out, "%s\"%s\":%.9g", k ? "," : "", emote_model_label(w->model, k), (double)r->probs[k]);
    fputc('}', w->out);
    if (w->top) {
        fputs(",\"top\":[", w->out);
        for (int k = 0; k < w->top; k++)
            fprintf(w->out, "%s{\"label\":\"%s\",\"prob\":%.9g}", k ? "," : "", emote_model_label(w->model, w->order[k]),
                   (double)r->probs[w->order[k]]);
        fputc(']', w->out);
    }
    fputs("}\n", w->out);
}

static void write_table(writer *w, const result *r) {
    int length = (int)strlen(r->path);
    if (length > w->path_width && length <= 80) w->path_width = length;
    text_write_escaped(w->out, r->path);
    fprintf(w->out, "%*s", length < w->path_width ? w->path_width - length : 0, "");
    if (r->face)
        fprintf(w->out, "  face %d (score %.2f) at %.0f,%.0f %.0fx%.0f", r->face_index, (double)r->face->score,
                (double)r->face->x, (double)r->face->y, (double)r->face->w, (double)r->face->h);
    if (r->error) {
        fputs("  ERROR  ", w->out);
        text_write_escaped(w->out, r->error);
        fputc('\n', w->out);
        return;
    }
    fprintf(w->out, "  %-10s %5.1f%%", emote_model_label(w->model, w->order[0]),
           100.0 * r->probs[w->order[0]]);
    for (int k = 1; k < w->top; k++)
        fprintf(w->out, "   %s %.1f%%", emote_model_label(w->model, w->order[k]), 100.0 * r->probs[w->order[k]]);
    fputc('\n', w->out);
}

static void render_record(writer *w, const result *r) {
    if (r->probs) sort_labels(r->probs, emote_model_num_classes(w->model), w->order);
    switch (w->format) {
    case FORMAT_JSONL: write_jsonl(w, r); break;
    case FORMAT_TABLE: write_table(w, r); break;
    default: write_delimited(w, r); break;
    }
}

static bool write_record(void *user, const result *r) {
    writer *w = user;
    progress_before_stdout(&w->progress);
    render_record(w, r);
    if (r->error && !r->no_face) {
        progress_clear(&w->progress);
        print_input_error(r->path, r->error);
    }
    fflush(w->out);
    progress_tick(&w->progress);
    return !ferror(w->out);
}

/* ---- -o FILE and --resume ------------------------------------------------------------ */

typedef struct {
    const char *path; /* -o; NULL: stdout */
    bool resume;
    record_file *file;
    char *header;
    char *identity; /* of the model and options, for FILE's identity file */
    writer *w;
    long skipped;
} output_target;

/* What `render` writes for w, as a string; NULL when out of memory. */
static char *render_to_string(writer *w, void (*render)(writer *, const void *), const void *arg, size_t *length) {
    char *text = NULL;
    size_t size = 0;
    FILE *memory = open_memstream(&text, &size);
    if (!memory) return NULL;
    FILE *out = w->out;
    w->out = memory;
    render(w, arg);
    w->out = out;
    if (fclose(memory) != 0) {
        free(text);
        return NULL;
    }
    if (length) *length = size;
    return text;
}

static void render_header(writer *w, const void *unused) {
    (void)unused;
    write_header(w);
}
static void render_result(writer *w, const void *r) { render_record(w, r); }
static void render_path(writer *w, const void *path) { write_path_field(w, w->out, path); }

typedef struct {
    writer *w;
    const char *expected;
    size_t length;
    bool seen, same;
    char error[EMOTE_ERROR_MAX];
} rerun_check;

static bool compare_rerun(void *user, const result *r) {
    rerun_check *c = user;
    size_t length;
    char *text = render_to_string(c->w, render_result, r, &length);
    c->seen = true;
    c->same = text && length == c->length && memcmp(text, c->expected, length) == 0;
    if (r->error) snprintf(c->error, sizeof c->error, "%s", r->error);
    free(text);
    return true;
}

/* For a FILE without an identity file (written by an emote before they existed): its last
 * prediction's input is classified again, and the same model and options must write the
 * same bytes, else FILE came from another model or other options. When that input cannot
 * be read any more, FILE is resumed unchecked, with a warning. */
static bool same_model_and_options(output_target *t, engine *e, const record_layout *layout) {
    size_t length;
    const char *last = record_file_last_prediction(t->file, &length);
    if (!last || !record_file_identity_unknown(t->file)) return true;
    char *path = record_path(layout, last, length);
    engine_options one = *e->options;
    one.shard_count = 0;
    one.stdin_image = false;
    one.progress = PROGRESS_NEVER;
    rerun_check c = {t->w, last, length, false, false, ""};
    input_source *src = path ? input_source_new(&path, 1, &one) : NULL;
    const engine_options *saved = e->options;
    e->options = &one;
    if (src) classify_inputs(e, src, compare_rerun, &c);
    e->options = saved;
    input_source_free(src);
    bool unchecked = !c.same && (c.error[0] || !path);
    if (unchecked && !e->options->quiet)
        fprintf(stderr, "emote: %s: warning: it has no identity file and its last record's input cannot be "
                "classified again (%s), so the model and options that wrote it are not checked\n", t->path,
                c.error[0] ? c.error : "no path");
    else if (!c.same)
        fprintf(stderr, "emote: %s: its last record differs from what this model and these options give for the "
                "same input (another model, --tta or --top?); refusing to resume into it, left as it is\n", t->path);
    free(path);
    return c.same || unchecked;
}

/* What makes a record's bytes: the model's bytes and the options of the output. */
static char *run_identity(const engine *e, const writer *w) {
    const engine_options *o = e->options;
    char sha[65];
    emote_model_sha256(e->model, sha); /* the bytes it was loaded from: a built-in model's or its file's */
    char *text = NULL;
    char faces[128] = "no";
    if (o->faces.on)
        snprintf(faces, sizeof faces, "yes min-face-score=%.9g detect-size=%d max-faces=%d any-angle=%s",
                 (double)o->faces.min_score, o->faces.detect_size, o->faces.max_faces, o->faces.any_angle ? "yes" : "no");
    static const char *const format_names[] = {[FORMAT_TSV] = "tsv", [FORMAT_CSV] = "csv", [FORMAT_JSONL] = "jsonl"};
    if (asprintf(&text, "model: sha256 %s\noptions: -f %s header=%s top=%d tta=%s "
                 "exif=%s faces=%s\n", sha, format_names[w->format], w->header ? "yes" : "no", w->top,
                 o->tta ? "yes" : "no", o->no_exif ? "no" : "yes", faces) < 0) {
        fprintf(stderr, "emote: out of memory\n");
        return NULL;
    }
    return text;
}

static bool skip_done(void *user, const char *path) {
    output_target *t = user;
    char *key = render_to_string(t->w, render_path, path, NULL);
    bool done = key && record_file_claim(t->file, key);
    free(key);
    if (done) {
        t->skipped++;
        progress_tick(&t->w->progress);
    }
    return done;
}

static void print_resume_summary(const output_target *t, const resume_summary *s) {
    if (s->stale_removed)
        fprintf(stderr, "emote: %s: removed %d temporary file%s of a rewrite that was interrupted\n", t->path,
                s->stale_removed, s->stale_removed > 1 ? "s" : "");
    if (!s->kept && !s->errors_dropped && !s->redone && !s->torn) return;
    fprintf(stderr, "emote: %s: resuming after %ld records (%ld error records dropped to retry; ", t->path, s->kept,
            s->errors_dropped);
    if (s->redone) fprintf(stderr, "%ld records of inputs to classify again dropped; ", s->redone);
    fprintf(stderr, "%s)\n", s->torn ? "an incomplete last record dropped" : "no incomplete record");
}

/* Opens -o FILE (scanned, checked and cleaned up first with --resume); w->out is set. */
static bool open_output(output_target *t, engine *e, bool quiet) {
    writer *w = t->w;
    int classes = emote_model_num_classes(w->model);
    bool delimited = w->format == FORMAT_TSV || w->format == FORMAT_CSV;
    t->header = delimited && w->header ? render_to_string(w, render_header, NULL, NULL) : NULL;
    t->identity = run_identity(e, w);
    if (!t->identity) return false;
    int fields = 4 + (w->top ? 2 * w->top : classes) + (w->faces ? FACE_COLUMNS : 0);
    record_layout layout = {w->format, t->header, fields, w->model, w->faces, t->identity};
    char error[EMOTE_ERROR_MAX];
    resume_summary summary;
    if (!t->resume) {
        t->file = record_file_create(t->path, &layout, error);
        w->out = t->file ? record_file_stream(t->file) : NULL;
    } else {
        t->file = record_file_scan(t->path, &layout, error);
        if (t->file && !same_model_and_options(t, e, &layout)) return false;
        w->out = t->file ? record_file_begin(t->file, &summary, error) : NULL;
        if (w->out && !quiet) print_resume_summary(t, &summary);
    }
    if (!w->out) print_error(error);
    return w->out != NULL;
}

enum { OPT_NO_HEADER = OPTION_COMMAND, OPT_RESUME };

static const struct option option_table[] = {
    {"format", required_argument, NULL, 'f'}, {"top", required_argument, NULL, 'k'},
    {"no-header", no_argument, NULL, OPT_NO_HEADER}, {"output", required_argument, NULL, 'o'},
    {"resume", no_argument, NULL, OPT_RESUME}, ENGINE_OPTIONS, HELP_OPTION, {0}};

static int cmd_classify(int argc, char **argv);
const command classify_command = {"classify", cmd_classify, option_table};

/* Returns -1 to go on, else the exit status (help or a usage error). */
static int parse_arguments(int argc, char **argv, engine_options *o, writer *w, output_target *out, char **paths,
                           int *num_paths) {
    option_parser p;
    options_start(&p, &classify_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        switch (code) {
        case OPTIONS_OPERAND: paths[(*num_paths)++] = p.value; break;
        case 'h': printf(usage, ENGINE_OPTIONS_HELP); return EXIT_ALL_OK;
        case 'f':
            if (!parse_format(p.value, &w->format) || w->format == FORMAT_JSON) {
                fprintf(stderr, "emote: %s needs table, tsv, csv or jsonl\n", p.name);
                return EXIT_USAGE;
            }
            break;
        case 'k':
            if (!parse_int_option(p.name, p.value, 1, 100000, &w->top)) return EXIT_USAGE;
            break;
        case OPT_NO_HEADER: w->header = false; break;
        case 'o':
            out->path = p.value;
            if (!*out->path) {
                fprintf(stderr, "emote: %s needs a file name\n", p.name);
                return EXIT_USAGE;
            }
            break;
        case OPT_RESUME: out->resume = true; break;
        default:
            if (!engine_option(o, &p, code)) return EXIT_USAGE;
        }
    }
    return -1;
}

static int cmd_classify(int argc, char **argv) {
    engine_options o = ENGINE_OPTIONS_DEFAULT;
    writer w = {.format = FORMAT_AUTO, .top = -1, .header = true, .path_width = 20, .out = stdout};
    output_target out = {.w = &w};
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int num_paths = 0;
    if (!paths) {
        fprintf(stderr, "emote: out of memory\n");
        return EXIT_FATAL;
    }
    int status = parse_arguments(argc, argv, &o, &w, &out, paths, &num_paths);
    if (status >= 0) {
        free(paths);
        return status;
    }
    if (o.stdin_image && num_paths == 0) paths[num_paths++] = "-";
    if (num_paths == 0) {
        fprintf(stderr, "emote: no inputs (give files, directories or '-'; see emote --help)\n");
        goto usage_error;
    }
    if (w.format == FORMAT_AUTO) w.format = !out.path && isatty(STDOUT_FILENO) ? FORMAT_TABLE : FORMAT_TSV;
    if (out.resume && (!out.path || w.format == FORMAT_TABLE)) {
        fprintf(stderr, "emote: --resume needs -o FILE and a tsv, csv or jsonl format\n");
        goto usage_error;
    }
    if (out.resume && o.stdin_image) {
        fprintf(stderr, "emote: --resume does not work with --stdin-image (its one input has no name to skip by)\n");
        goto usage_error;
    }
    fit_engine_to_inputs(&o, paths, num_paths);
    engine e;
    if (!engine_open(&e, &o)) {
        free(paths);
        return EXIT_FATAL;
    }
    w.model = e.model;
    int classes = emote_model_num_classes(e.model);
    if (w.top < 0) w.top = w.format == FORMAT_TABLE ? 3 : 0;
    if (w.top > classes) w.top = classes;
    w.order = calloc((size_t)classes, sizeof(int));
    w.faces = o.faces.on;
    if (out.path && !open_output(&out, &e, o.quiet)) {
        record_file_free(out.file);
        free(out.identity);
        free(out.header);
        free(w.order);
        engine_close(&e);
        free(paths);
        return EXIT_FATAL;
    }
    input_source *src = input_source_new(paths, num_paths, &o);
    if (!out.path && w.header && (w.format == FORMAT_TSV || w.format == FORMAT_CSV)) write_header(&w);
    progress_start(&w.progress, &o, paths, num_paths);
    run_counts counts = classify_inputs_skipping(&e, src, out.resume ? skip_done : NULL, &out, write_record, &w);
    progress_finish(&w.progress);
    input_source_free(src);
    char error[EMOTE_ERROR_MAX];
    bool written = !out.file || record_file_close(out.file, error);
    if (!written) print_error(error);
    free(out.identity);
    free(out.header);
    free(w.order);
    engine_close(&e);
    free(paths);
    if (!written) return EXIT_FATAL;
    if (counts.done == 0 && out.skipped > 0) {
        if (!o.quiet) fprintf(stderr, "emote: %s: all %ld inputs already have a record\n", out.path, out.skipped);
        return EXIT_ALL_OK;
    }
    if (counts.done == 0) {
        fprintf(stderr, "emote: no images found in the inputs given\n");
        return EXIT_FATAL;
    }
    if (counts.failed && !o.quiet) fprintf(stderr, "emote: %ld of %ld inputs failed\n", counts.failed, counts.done);
    return counts.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
usage_error:
    free(paths);
    return EXIT_USAGE;
}
