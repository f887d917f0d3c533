/* emote classify: one record per input, in input order, flushed as produced. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

static const char usage[] =
    "usage: emote [classify] [options] PATH...\n"
    "\n"
    "Classifies face crops. PATH is an image file, a directory (walked recursively, files\n"
    "with an image extension, in sorted order) or '-' to read paths from stdin.\n"
    "\n"
    "  -f, --format F       table | tsv | csv | jsonl (default: table on a terminal, else tsv)\n"
    "  -k, --top K          also list the K most likely labels (table default 3)\n"
    "      --no-header      no header line in tsv/csv\n"
    "%s"
    "  -h, --help           this help\n"
    "\n"
    "Records: tsv/csv columns are path, label, confidence, then one probability per label\n"
    "(or top1_label, top1_prob, ... with --top), then error. jsonl: {\"path\", \"label\",\n"
    "\"confidence\", \"probs\": {label: p}, [\"top\"]} or {\"path\", \"error\"}.\n"
    "\n"
    "Exit status: 0 all inputs classified; 1 some inputs failed (each is reported, the rest\n"
    "are classified); 2 usage error; 3 fatal (model unusable, no inputs).\n"
    "\n"
    "Examples:\n"
    "  emote face.png\n"
    "  emote -f jsonl photos/ > predictions.jsonl\n"
    "  find crops -name '*.jpg' -print0 | emote -0 -f csv - > labels.csv\n"
    "  emote --stdin-image < face.jpg\n";

typedef struct {
    const emote_model *model;
    output_format format;
    int top;
    bool header;
    int *order;     /* label indices by falling probability */
    int path_width; /* table: the widest path so far (up to 80), so that columns line up */
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
    printf("path%clabel%cconfidence", sep, sep);
    if (w->top) {
        for (int k = 1; k <= w->top; k++) printf("%ctop%d_label%ctop%d_prob", sep, k, sep, k);
    } else {
        for (int k = 0; k < classes; k++) printf("%c%s", sep, emote_model_label(w->model, k));
    }
    printf("%cerror\n", sep);
}

/* A tsv field: tabs and newlines in paths or messages become spaces. */
static void tsv_write_field(FILE *f, const char *s) {
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static void write_delimited(const writer *w, const result *r) {
    bool csv = w->format == FORMAT_CSV;
    char sep = csv ? ',' : '\t';
    int classes = emote_model_num_classes(w->model);
    int columns = w->top ? 2 * w->top : classes;
    void (*field)(FILE *, const char *) = csv ? csv_write_field : tsv_write_field;
    field(stdout, r->path);
    if (r->error) {
        printf("%c%c", sep, sep);
        for (int k = 0; k < columns; k++) putchar(sep);
        putchar(sep);
        field(stdout, r->error);
        putchar('\n');
        return;
    }
    int best = w->order[0];
    printf("%c%s%c%.9g", sep, emote_model_label(w->model, best), sep, (double)r->probs[best]);
    if (w->top) {
        for (int k = 0; k < w->top; k++)
            printf("%c%s%c%.9g", sep, emote_model_label(w->model, w->order[k]), sep, (double)r->probs[w->order[k]]);
    } else {
        for (int k = 0; k < classes; k++) printf("%c%.9g", sep, (double)r->probs[k]);
    }
    printf("%c\n", sep);
}

static void write_jsonl(const writer *w, const result *r) {
    int classes = emote_model_num_classes(w->model);
    fputc('{', stdout);
    json_write_path(stdout, "path", r->path);
    if (r->error) {
        fputs(",\"error\":", stdout);
        json_write_string(stdout, r->error);
        fputs("}\n", stdout);
        return;
    }
    printf(",\"label\":\"%s\",\"confidence\":%.9g,\"probs\":{", emote_model_label(w->model, w->order[0]),
           (double)r->probs[w->order[0]]);
    for (int k = 0; k < classes; k++) printf("%s\"%s\":%.9g", k ? "," : "", emote_model_label(w->model, k), (double)r->probs[k]);
    putchar('}');
    if (w->top) {
        fputs(",\"top\":[", stdout);
        for (int k = 0; k < w->top; k++)
            printf("%s{\"label\":\"%s\",\"prob\":%.9g}", k ? "," : "", emote_model_label(w->model, w->order[k]),
                   (double)r->probs[w->order[k]]);
        putchar(']');
    }
    fputs("}\n", stdout);
}

static void write_table(writer *w, const result *r) {
    int length = (int)strlen(r->path);
    if (length > w->path_width && length <= 80) w->path_width = length;
    text_write_escaped(stdout, r->path);
    printf("%*s", length < w->path_width ? w->path_width - length : 0, "");
    if (r->error) {
        fputs("  ERROR  ", stdout);
        text_write_escaped(stdout, r->error);
        putchar('\n');
        return;
    }
    printf("  %-10s %5.1f%%", emote_model_label(w->model, w->order[0]),
           100.0 * r->probs[w->order[0]]);
    for (int k = 1; k < w->top; k++)
        printf("   %s %.1f%%", emote_model_label(w->model, w->order[k]), 100.0 * r->probs[w->order[k]]);
    putchar('\n');
}

static bool write_record(void *user, const result *r) {
    writer *w = user;
    if (r->probs) sort_labels(r->probs, emote_model_num_classes(w->model), w->order);
    progress_before_stdout(&w->progress);
    switch (w->format) {
    case FORMAT_JSONL: write_jsonl(w, r); break;
    case FORMAT_TABLE: write_table(w, r); break;
    default: write_delimited(w, r); break;
    }
    if (r->error) {
        progress_clear(&w->progress);
        print_error(r->error);
    }
    fflush(stdout);
    progress_tick(&w->progress);
    return !ferror(stdout);
}

int cmd_classify(int argc, char **argv) {
    engine_options o = ENGINE_OPTIONS_DEFAULT;
    writer w = {.format = FORMAT_AUTO, .top = -1, .header = true, .path_width = 20};
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int num_paths = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !strcmp(a, "-")) {
            paths[num_paths++] = argv[i];
            continue;
        }
        int handled = parse_engine_option(&o, argc, argv, &i);
        if (handled < 0) goto usage_error;
        if (handled) continue;
        if (!strcmp(a, "--")) options_done = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, ENGINE_OPTIONS_HELP);
            free(paths);
            return EXIT_ALL_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--format")) {
            if (!parse_format(i + 1 < argc ? argv[++i] : NULL, &w.format) || w.format == FORMAT_JSON) {
                fprintf(stderr, "emote: --format needs table, tsv, csv or jsonl\n");
                goto usage_error;
            }
        } else if (!strcmp(a, "-k") || !strcmp(a, "--top")) {
            if (!parse_int_option(a, i + 1 < argc ? argv[++i] : NULL, 1, 100000, &w.top)) goto usage_error;
        } else if (!strcmp(a, "--no-header")) {
            w.header = false;
        } else {
            fprintf(stderr, "emote: unknown option '%s' (see emote --help)\n", a);
            goto usage_error;
        }
    }
    if (o.stdin_image && num_paths == 0) paths[num_paths++] = "-";
    if (num_paths == 0) {
        fprintf(stderr, "emote: no inputs (give files, directories or '-'; see emote --help)\n");
        goto usage_error;
    }
    if (w.format == FORMAT_AUTO) w.format = isatty(STDOUT_FILENO) ? FORMAT_TABLE : FORMAT_TSV;
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
    input_source *src = input_source_new(paths, num_paths, &o);
    if (w.header && (w.format == FORMAT_TSV || w.format == FORMAT_CSV)) write_header(&w);
    progress_start(&w.progress, &o, paths, num_paths);
    run_counts counts = classify_inputs(&e, src, write_record, &w);
    progress_finish(&w.progress);
    input_source_free(src);
    free(w.order);
    engine_close(&e);
    free(paths);
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
