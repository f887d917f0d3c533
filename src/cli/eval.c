/* emote eval DIR: accuracy, per-class precision/recall/F1, macro-F1 and the confusion
 * matrix on an ImageFolder tree DIR/<label>/..., labels matched by name. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "metrics.h"
#include "plot.h"
#include "progress.h"
#include "util.h"

static const char usage[] =
    "usage: emote eval [options] DIR\n"
    "\n"
    "Evaluates the model on DIR/<label>/* (an ImageFolder tree; folders are matched to the\n"
    "model's labels by name, other folders are skipped with a warning).\n"
    "\n"
    "  -f, --format F         text | json (default text)\n"
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
    "  emote eval -f json --min-accuracy 0.69 --plot confusion.png val/\n";

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
        print_error(r->error);
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

static void print_text(const eval_state *s, const metrics_summary *m, long failed) {
    const confusion_matrix *c = &s->confusion;
    int k = c->classes;
    printf("images      %ld evaluated, %ld failed\n", c->total, failed);
    printf("accuracy    %.4f\nmean recall %.4f\nmacro-F1    %.4f\n\n", m->accuracy, m->mean_recall, m->macro_f1);
    printf("%-12s %9s %9s %9s %8s\n", "label", "precision", "recall", "f1", "support");
    for (int i = 0; i < k; i++)
        printf("%-12s %9.4f %9.4f %9.4f %8ld\n", emote_model_label(s->model, i), m->per_class[i].precision,
               m->per_class[i].recall, m->per_class[i].f1, m->per_class[i].support);
    printf("\nconfusion matrix (rows: true label, columns: predicted)\n%-12s", "");
    for (int j = 0; j < k; j++) printf(" %8.8s", emote_model_label(s->model, j));
    putchar('\n');
    for (int i = 0; i < k; i++) {
        printf("%-12s", emote_model_label(s->model, i));
        for (int j = 0; j < k; j++) printf(" %8ld", confusion_at(c, i, j));
        putchar('\n');
    }
}

static void print_json(const eval_state *s, const metrics_summary *m, long failed) {
    const confusion_matrix *c = &s->confusion;
    int k = c->classes;
    printf("{\"model\":");
    json_write_string(stdout, emote_model_name(s->model));
    printf(",\"images\":%ld,\"failed\":%ld,\"accuracy\":%.17g,\"mean_recall\":%.17g,\"macro_f1\":%.17g,\"labels\":[",
           c->total, failed, m->accuracy, m->mean_recall, m->macro_f1);
    for (int i = 0; i < k; i++) printf("%s\"%s\"", i ? "," : "", emote_model_label(s->model, i));
    printf("],\"per_class\":{");
    for (int i = 0; i < k; i++)
        printf("%s\"%s\":{\"precision\":%.17g,\"recall\":%.17g,\"f1\":%.17g,\"support\":%ld}", i ? "," : "",
               emote_model_label(s->model, i), m->per_class[i].precision, m->per_class[i].recall, m->per_class[i].f1,
               m->per_class[i].support);
    printf("},\"confusion\":[");
    for (int i = 0; i < k; i++) {
        printf("%s[", i ? "," : "");
        for (int j = 0; j < k; j++) printf("%s%ld", j ? "," : "", confusion_at(c, i, j));
        putchar(']');
    }
    printf("]}\n");
}

int cmd_eval(int argc, char **argv) {
    engine_options o = ENGINE_OPTIONS_DEFAULT;
    output_format format = FORMAT_TABLE;
    double min_accuracy = -1, min_macro_f1 = -1;
    const char *dir = NULL, *plot_path = NULL;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && !strcmp(a, "--")) {
            options_done = true;
            continue;
        }
        if (options_done || a[0] != '-' || !a[1]) {
            if (dir) {
                fprintf(stderr, "emote: eval takes one directory (got '%s' and '%s')\n", dir, a);
                return EXIT_USAGE;
            }
            dir = a;
            continue;
        }
        int handled = parse_engine_option(&o, argc, argv, &i);
        if (handled < 0) return EXIT_USAGE;
        if (handled) continue;
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, ENGINE_OPTIONS_HELP);
            return EXIT_ALL_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--format")) {
            if (!parse_format(value, &format) || (format != FORMAT_TABLE && format != FORMAT_JSON)) {
                fprintf(stderr, "emote: eval --format needs text or json\n");
                return EXIT_USAGE;
            }
            i++;
        } else if (!strcmp(a, "--min-accuracy")) {
            if (!parse_double_option(a, value, 0, 1, &min_accuracy)) return EXIT_USAGE;
            i++;
        } else if (!strcmp(a, "--min-macro-f1")) {
            if (!parse_double_option(a, value, 0, 1, &min_macro_f1)) return EXIT_USAGE;
            i++;
        } else if (!strcmp(a, "--plot")) {
            if (!value || !plot_format_supported(value)) {
                fprintf(stderr, "emote: --plot needs a file name ending in .png or .svg\n");
                return EXIT_USAGE;
            }
            plot_path = value;
            i++;
        } else {
            fprintf(stderr, "emote: unknown option '%s' (see emote eval --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!dir) {
        fprintf(stderr, "emote: eval needs a directory (see emote eval --help)\n");
        return EXIT_USAGE;
    }
    o.stdin_image = false;
    engine e;
    if (!engine_open(&e, &o)) return EXIT_FATAL;
    eval_state s = {.model = e.model, .root = dir, .root_len = strlen(dir), .quiet = o.quiet};
    char **folders = NULL;
    int count = label_folders(&s, &folders);
    int status = EXIT_FATAL;
    if (count >= 0 && confusion_init(&s.confusion, emote_model_num_classes(e.model))) {
        input_source *src = input_source_new(folders, count, &o);
        progress_start(&s.progress, &o, folders, count);
        run_counts counts = classify_inputs(&e, src, record_result, &s);
        progress_finish(&s.progress);
        input_source_free(src);
        metrics_summary m;
        if (s.confusion.total == 0) {
            fprintf(stderr, "emote: %s: no images in folders named after the model's labels\n", dir);
        } else if (metrics_compute(&s.confusion, &m)) {
            if (format == FORMAT_JSON) print_json(&s, &m, counts.failed);
            else print_text(&s, &m, counts.failed);
            fflush(stdout);
            status = counts.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
            if (plot_path && !plot_confusion(plot_path, &s.confusion, e.model)) status = EXIT_FATAL;
            if (min_accuracy >= 0 && m.accuracy < min_accuracy) {
                fprintf(stderr, "emote: accuracy %.4f is below --min-accuracy %.4f\n", m.accuracy, min_accuracy);
                status = EXIT_CHECK_FAILED;
            }
            if (min_macro_f1 >= 0 && m.macro_f1 < min_macro_f1) {
                fprintf(stderr, "emote: macro-F1 %.4f is below --min-macro-f1 %.4f\n", m.macro_f1, min_macro_f1);
                status = EXIT_CHECK_FAILED;
            }
            metrics_free(&m);
        }
    }
    for (int i = 0; i < count; i++) free(folders[i]);
    free(folders);
    confusion_free(&s.confusion);
    engine_close(&e);
    return status;
}
