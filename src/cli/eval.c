/* emote eval DIR: accuracy, per-class precision/recall/F1, macro-F1 and the confusion
 * matrix on an ImageFolder tree DIR/<label>/..., labels matched by name. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "metrics.h"
#include "plot.h"
#include "progress.h"
#include "util.h"

static const char usage[] =
    "usage: emote eval [options] DIR\n"
    "       emote eval [options] --predictions FILE|PATTERN [FILE|PATTERN...]\n"
    "\n"
    "Evaluates the model on DIR/<label>/* (an ImageFolder tree; folders are matched to the\n"
    "model's labels by name, other folders are skipped with a warning). With --predictions\n"
    "it runs no model: it reads jsonl prediction files (e.g. the shards of one run, 'classify\n"
    "-f jsonl -o part-K.jsonl'), takes each record's true label from its path's folder\n"
    "(.../<label>/file) and gives the report that one eval over the whole tree gives.\n"
    "\n"
    "  -f, --format F         text | json (default text)\n"
    "      --predictions P    jsonl files to evaluate instead of a directory; a quoted\n"
    "                         pattern ('part-*.jsonl') is expanded by emote\n"
    "      --min-accuracy A   exit 4 when top-1 accuracy is below A (0..1)\n"
    "      --min-macro-f1 F   exit 4 when macro-F1 is below F (0..1)\n"
    "      --plot FILE        draw the confusion matrix to FILE (.png or .svg)\n"
    "%s"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 ok; 1 some images failed (listed on stderr; metrics use the rest);\n"
    "2 usage error; 3 fatal (no model, no labelled images); 4 below a --min-* gate.\n"
    "\n"
    "Examples:\n"
    "  emote eval ../shared/data/fer2013/val\n"
    "  emote eval -f json --min-accuracy 0.69 --plot confusion.png val/\n"
    "  emote eval --predictions 'part-*.jsonl'\n";

typedef struct {
    output_format format;
    double min_accuracy, min_macro_f1; /* -1: no gate */
    const char *plot_path;
    const char *source; /* for messages: DIR or "the prediction files" */
} eval_options;

typedef struct {
    long failed, outside; /* error records; records outside a label folder */
} prediction_counts;

typedef struct {
    const emote_model *model;
    const char *root;
    size_t root_len;
    confusion_matrix confusion;
    bool quiet;
    progress_bar progress;
} eval_state;

/* The label folder of a path under root: the first component after "root/". */
static int true_label_of(const eval_state *s, const char *path) {
    const char *rest = path + s->root_len;
    while (*rest == '/') rest++;
    size_t len = strcspn(rest, "/");
    for (int k = 0; k < emote_model_num_classes(s->model); k++) {
        const char *label = emote_model_label(s->model, k);
        if (strlen(label) == len && strncmp(label, rest, len) == 0) return k;
    }
    return -1;
}

static bool record_result(void *user, const result *r) {
    eval_state *s = user;
    if (r->error) {
        progress_clear(&s->progress);
        print_input_error(r->path, r->error);
    } else {
        int truth = true_label_of(s, r->path);
        if (truth >= 0) confusion_add(&s->confusion, truth, top_label(r->probs, s->confusion.classes));
    }
    progress_tick(&s->progress);
    return true;
}

/* The DIR/<label> folders that match a model label, in sorted order. */
static int label_folders(const eval_state *s, char ***out) {
    DIR *d = opendir(s->root);
    if (!d) {
        fprintf(stderr, "emote: %s: cannot read directory: %s\n", s->root, strerror(errno));
        return -1;
    }
    int classes = emote_model_num_classes(s->model), count = 0;
    char **folders = calloc((size_t)classes, sizeof *folders);
    struct dirent *e;
    while (folders && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(s->root, e->d_name);
        if (!path) break;
        struct stat st;
        bool is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        int label = -1;
        for (int k = 0; is_dir && k < classes; k++)
            if (strcmp(emote_model_label(s->model, k), e->d_name) == 0) label = k;
        if (label >= 0) {
            folders[count++] = path;
        } else {
            if (!s->quiet)
                fprintf(stderr, "emote: warning: skipping %s: %s\n", path,
                        is_dir ? "not one of the model's labels" : "not in a label folder");
            free(path);
        }
    }
    closedir(d);
    for (int i = 1; i < count; i++) /* sort by name so the order is stable */
        for (int j = i; j > 0 && strcmp(folders[j - 1], folders[j]) > 0; j--) {
            char *t = folders[j];
            folders[j] = folders[j - 1];
            folders[j - 1] = t;
        }
    *out = folders;
    return count;
}

static void print_report(const eval_state *s, const metrics_summary *m, long failed, output_format format) {
    int k = s->confusion.classes;
    const char **labels = calloc_array((size_t)k, sizeof *labels);
    if (!labels) {
        fprintf(stderr, "emote: out of memory\n");
        return;
    }
    for (int i = 0; i < k; i++) labels[i] = emote_model_label(s->model, i);
    if (format == FORMAT_JSON) {
        printf("{\"model\":");
        json_write_string(stdout, emote_model_name(s->model));
        putchar(',');
        metrics_print_json_fields(stdout, &s->confusion, m, labels, failed);
        printf("}\n");
    } else {
        metrics_print_text(stdout, &s->confusion, m, labels, failed);
    }
    free(labels);
}

/* Prints the report, draws the plot and applies the gates; returns the exit status. */
static int report(const eval_state *s, long failed, const eval_options *eo, const emote_model *model) {
    metrics_summary m;
    if (s->confusion.total == 0) {
        fprintf(stderr, "emote: %s: no images in folders named after the model's labels\n", eo->source);
        return EXIT_FATAL;
    }
    if (!metrics_compute(&s->confusion, &m)) {
        fprintf(stderr, "emote: out of memory\n");
        return EXIT_FATAL;
    }
    print_report(s, &m, failed, eo->format);
    fflush(stdout);
    int status = failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
    if (eo->plot_path && !plot_confusion(eo->plot_path, &s->confusion, model)) status = EXIT_FATAL;
    if (eo->min_accuracy >= 0 && m.accuracy < eo->min_accuracy) {
        fprintf(stderr, "emote: accuracy %.4f is below --min-accuracy %.4f\n", m.accuracy, eo->min_accuracy);
        status = EXIT_CHECK_FAILED;
    }
    if (eo->min_macro_f1 >= 0 && m.macro_f1 < eo->min_macro_f1) {
        fprintf(stderr, "emote: macro-F1 %.4f is below --min-macro-f1 %.4f\n", m.macro_f1, eo->min_macro_f1);
        status = EXIT_CHECK_FAILED;
    }
    metrics_free(&m);
    return status;
}

/* ---- --predictions ---------------------------------------------------------------------- */

static int label_index(const emote_model *model, const char *name, size_t length) {
    for (int k = 0; k < emote_model_num_classes(model); k++) {
        const char *label = emote_model_label(model, k);
        if (strlen(label) == length && strncmp(label, name, length) == 0) return k;
    }
    return -1;
}

/* The label named by the folder a path sits in (.../<label>/file), or -1. */
static int folder_label(const emote_model *model, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return -1;
    const char *start = slash;
    while (start > path && start[-1] != '/') start--;
    return label_index(model, start, (size_t)(slash - start));
}

/* Adds one jsonl record; false (message printed) when the line is not a record. */
static bool add_prediction(eval_state *s, const char *file, long number, const char *line, prediction_counts *c) {
    cJSON *json = cJSON_Parse(line);
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(json, "path");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(json, "label");
    int truth = cJSON_IsString(path) ? folder_label(s->model, path->valuestring) : -1;
    int predicted = cJSON_IsString(label) ? label_index(s->model, label->valuestring, strlen(label->valuestring)) : -1;
    bool ok = cJSON_IsObject(json) && cJSON_IsString(path) && (cJSON_IsString(error) || predicted >= 0);
    if (!ok) {
        fprintf(stderr, "emote: %s:%ld: not a jsonl prediction record of this model (%s)\n", file, number,
                !cJSON_IsObject(json) ? "not a JSON object" : !cJSON_IsString(path) ? "no \"path\" string"
                : cJSON_IsString(label) ? "its \"label\" is not one of the model's labels" : "no \"label\" or \"error\"");
    } else if (truth < 0) {
        c->outside++;
    } else if (cJSON_IsString(error)) {
        c->failed++;
        if (!s->quiet) fprintf(stderr, "emote: %s\n", error->valuestring);
    } else {
        confusion_add(&s->confusion, truth, predicted);
    }
    cJSON_Delete(json);
    return ok;
}

static bool read_predictions(eval_state *s, const char *file, prediction_counts *c) {
    FILE *in = fopen(file, "r");
    if (!in) {
        fprintf(stderr, "emote: %s: cannot open: %s\n", file, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t capacity = 0;
    ssize_t n;
    long number = 0;
    bool ok = true;
    while (ok && (n = getline(&line, &capacity, in)) > 0) {
        number++;
        if (line[n - 1] != '\n') {
            fprintf(stderr, "emote: %s:%ld: incomplete last record (a run still going, or killed: resume it)\n", file,
                    number);
            ok = false;
        } else if (strlen(line) != (size_t)n) {
            fprintf(stderr, "emote: %s:%ld: contains a NUL byte\n", file, number);
            ok = false;
        } else {
            ok = add_prediction(s, file, number, line, c);
        }
    }
    if (ok && ferror(in)) {
        fprintf(stderr, "emote: %s: cannot read: %s\n", file, strerror(errno));
        ok = false;
    }
    free(line);
    fclose(in);
    return ok;
}

/* Reads every file that the patterns name (each expanded with glob(3), in sorted order). */
static bool read_all_predictions(eval_state *s, char **patterns, int count, long *failed) {
    prediction_counts c = {0, 0};
    bool ok = true;
    for (int i = 0; ok && i < count; i++) {
        glob_t g;
        int r = glob(patterns[i], GLOB_ERR, NULL, &g);
        if (r == GLOB_NOMATCH) fprintf(stderr, "emote: %s: no such prediction file\n", patterns[i]);
        else if (r != 0) fprintf(stderr, "emote: %s: cannot expand the pattern\n", patterns[i]);
        ok = r == 0;
        for (size_t k = 0; ok && k < g.gl_pathc; k++) ok = read_predictions(s, g.gl_pathv[k], &c);
        if (r != GLOB_NOMATCH) globfree(&g);
    }
    if (ok && c.outside && !s->quiet)
        fprintf(stderr, "emote: warning: skipping %ld records whose path is not in a folder named after a label\n",
                c.outside);
    *failed = c.failed;
    return ok;
}

static int eval_directory(const engine_options *o, const eval_options *eo, const char *dir) {
    engine e;
    if (!engine_open(&e, o)) return EXIT_FATAL;
    eval_state s = {.model = e.model, .root = dir, .root_len = strlen(dir), .quiet = o->quiet};
    char **folders = NULL;
    int count = label_folders(&s, &folders);
    int status = EXIT_FATAL;
    if (count >= 0 && confusion_init(&s.confusion, emote_model_num_classes(e.model))) {
        input_source *src = input_source_new(folders, count, o);
        progress_start(&s.progress, o, folders, count);
        run_counts counts = classify_inputs(&e, src, record_result, &s);
        progress_finish(&s.progress);
        input_source_free(src);
        status = report(&s, counts.failed, eo, e.model);
    }
    for (int i = 0; i < count; i++) free(folders[i]);
    free(folders);
    confusion_free(&s.confusion);
    engine_close(&e);
    return status;
}

static int eval_predictions(const engine_options *o, const eval_options *eo, char **patterns, int count) {
    emote_error err;
    const char *path = o->model_path ? o->model_path : getenv("EMOTE_MODEL");
    emote_model *model = emote_model_open_any(path, &err);
    if (!model) {
        fprintf(stderr, "emote: %s\n", err.message);
        return EXIT_FATAL;
    }
    eval_state s = {.model = model, .quiet = o->quiet};
    int status = EXIT_FATAL;
    long failed = 0;
    if (confusion_init(&s.confusion, emote_model_num_classes(model)) &&
        read_all_predictions(&s, patterns, count, &failed))
        status = report(&s, failed, eo, model);
    confusion_free(&s.confusion);
    emote_model_close(model);
    return status;
}
enum { OPT_PREDICTIONS = OPTION_COMMAND, OPT_MIN_ACCURACY, OPT_MIN_MACRO_F1, OPT_PLOT };

static const struct option option_table[] = {
    {"format", required_argument, NULL, 'f'}, {"predictions", required_argument, NULL, OPT_PREDICTIONS},
    {"min-accuracy", required_argument, NULL, OPT_MIN_ACCURACY},
    {"min-macro-f1", required_argument, NULL, OPT_MIN_MACRO_F1}, {"plot", required_argument, NULL, OPT_PLOT},
    ENGINE_OPTIONS, HELP_OPTION, {0}};

static int cmd_eval(int argc, char **argv);
const command eval_command = {"eval", cmd_eval, option_table};

/* Returns -1 to go on, else the exit status (help or a usage error). DIR operands and
 * --predictions values go to sources, in order. */
static int parse_arguments(int argc, char **argv, engine_options *o, eval_options *eo, char **sources,
                           int *num_sources, bool *predictions) {
    option_parser p;
    options_start(&p, &eval_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        switch (code) {
        case OPTIONS_OPERAND:
        case OPT_PREDICTIONS:
            *predictions |= code == OPT_PREDICTIONS;
            sources[(*num_sources)++] = p.value;
            break;
        case 'h': printf(usage, ENGINE_OPTIONS_HELP); return EXIT_ALL_OK;
        case 'f':
            if (!parse_report_format(&p, &eo->format)) return EXIT_USAGE;
            break;
        case OPT_MIN_ACCURACY:
            if (!parse_double_option(p.name, p.value, 0, 1, &eo->min_accuracy)) return EXIT_USAGE;
            break;
        case OPT_MIN_MACRO_F1:
            if (!parse_double_option(p.name, p.value, 0, 1, &eo->min_macro_f1)) return EXIT_USAGE;
            break;
        case OPT_PLOT:
            if (!plot_format_supported(p.value)) {
                fprintf(stderr, "emote: --plot needs a file name ending in .png or .svg\n");
                return EXIT_USAGE;
            }
            eo->plot_path = p.value;
            break;
        default:
            if (!engine_option(o, &p, code)) return EXIT_USAGE;
        }
    }
    return -1;
}

static int cmd_eval(int argc, char **argv) {
    engine_options o = ENGINE_OPTIONS_DEFAULT;
    o.faces.largest_only = true; /* --faces: the largest face of each image */
    eval_options eo = {.format = FORMAT_TABLE, .min_accuracy = -1, .min_macro_f1 = -1};
    char **sources = calloc((size_t)argc + 1, sizeof *sources);
    int num_sources = 0;
    bool predictions = false;
    if (!sources) return EXIT_FATAL;
    int status = parse_arguments(argc, argv, &o, &eo, sources, &num_sources, &predictions);
    if (status < 0 && num_sources == 0) {
        fprintf(stderr, "emote: eval needs a directory (see emote eval --help)\n");
        status = EXIT_USAGE;
    } else if (status < 0 && !predictions && num_sources > 1) {
        fprintf(stderr, "emote: eval takes one directory (got '%s' and '%s')\n", sources[0], sources[1]);
        status = EXIT_USAGE;
    } else if (status < 0) {
        o.stdin_image = false;
        eo.source = predictions ? "the prediction files" : sources[0];
        status = predictions ? eval_predictions(&o, &eo, sources, num_sources) : eval_directory(&o, &eo, sources[0]);
    }
    free(sources);
    return status;
}
