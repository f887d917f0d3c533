/* emote eval DIR: accuracy, per-class precision/recall/F1, macro-F1 and the confusion
 * matrix on an ImageFolder tree DIR/<label>/..., labels matched by name. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "metrics.h"
#include "plot.h"
#include "predictions.h"
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
    "(.../<label>/file) and gives the report that one eval over the whole tree gives: each\n"
    "image once (a repeated record must agree; of --faces records the main face counts).\n"
    "\n"
    "  -f, --format F         text | json (default text)\n"
    "      --predictions P    jsonl files to evaluate instead of a directory; a quoted\n"
    "                         pattern ('part-*.jsonl') is expanded by emote; '-': stdin\n"
    "      --min-accuracy A   exit 4 when top-1 accuracy is below A (0..1)\n"
    "      --min-macro-f1 F   exit 4 when macro-F1 is below F (0..1)\n"
    "      --plot FILE        draw the confusion matrix to FILE (.png or .svg)\n"
    "%s"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 ok; 1 some images failed (listed on stderr; metrics use the rest);\n"
    "2 usage error; 3 fatal (no model, no labelled images, a bad or conflicting prediction\n"
    "record, stdout not writable); 4 below a --min-* gate.\n"
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
        print_errorf("%s: cannot read directory: %s", s->root, strerror(errno));
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
                print_errorf("warning: skipping %s: %s", path,
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
        print_errorf("%s: no images in folders named after the model's labels", eo->source);
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

/* ---- one record per image ----
 * Each image counts once, as in eval DIR: of the face records of a `classify --faces`
 * image (one after another in its file) only the main face counts, the one eval --faces
 * takes (emote_main_face on their boxes and scores); a record repeated for one path (a
 * merged file beside its parts) counts once when it says the same, and is an error when
 * it does not. */

typedef struct {
    char *path;       /* owned; the key of prediction_tally.seen */
    uint64_t content; /* hash of what the record says (record_content) */
    int file;         /* index in prediction_tally.files */
    long line;
} counted_record;

typedef struct {
    eval_state *s;
    bool require_face;   /* --require-face: a "no face found" record counts as failed */
    label_set labels;    /* label names as the prediction files spell them */
    char **files;        /* owned names of the files read, for messages */
    int num_files, files_capacity;
    counted_record *counted;
    int num_counted, counted_capacity;
    string_table seen;   /* path -> index in counted */
    long failed, outside; /* error records; records outside a label folder */
    prediction *faces;    /* the face records of the image being read, in file order */
    int num_faces, faces_capacity;
} prediction_tally;

/* What a record says, hashed (64 bits: two records that differ hash alike with a chance of
 * about 2^-64): its error message, or its label and probabilities, field by field (a
 * struct's padding is not hashed). */
static uint64_t record_content(const prediction *r) {
    uint64_t h = HASH_SEED;
    if (r->error) return hash_bytes(h, r->error, strlen(r->error) + 1);
    h = hash_bytes(hash_bytes(h, "", 1), &r->label, sizeof r->label);
    for (int i = 0; i < r->num_probs; i++) {
        h = hash_bytes(h, &r->probs[i].label, sizeof r->probs[i].label);
        h = hash_bytes(h, &r->probs[i].prob, sizeof r->probs[i].prob);
    }
    return h;
}

static void drop_faces(prediction_tally *t) {
    for (int i = 0; i < t->num_faces; i++) prediction_free(&t->faces[i]);
    t->num_faces = 0;
}

static void tally_free(prediction_tally *t) {
    drop_faces(t);
    free(t->faces);
    for (int i = 0; i < t->num_files; i++) free(t->files[i]);
    for (int i = 0; i < t->num_counted; i++) free(t->counted[i].path);
    free(t->files);
    free(t->counted);
    table_free(&t->seen);
    label_set_free(&t->labels);
}

/* Remembers r's path (taken from r) as counted; false when out of memory. */
static bool remember(prediction_tally *t, prediction *r, int file) {
    counted_record *counted = array_reserve_one(t->counted, t->num_counted, &t->counted_capacity, sizeof *counted);
    if (!counted) return false;
    t->counted = counted;
    counted[t->num_counted] = (counted_record){r->path, record_content(r), file, r->line};
    if (table_add(&t->seen, r->path, t->num_counted) < 0) return false;
    t->num_counted++;
    r->path = NULL;
    return true;
}

/* True when r's path was counted before; a conflicting repeat is reported in *conflict. */
static bool seen_before(const prediction_tally *t, const prediction *r, int file, bool *conflict) {
    int i = table_find(&t->seen, r->path);
    *conflict = i >= 0 && t->counted[i].content != record_content(r);
    if (*conflict)
        print_errorf("%s:%ld: a second record for %s, which differs from the one at %s:%ld (records repeated for "
                     "one image must agree)",
                     t->files[file], r->line, r->path, t->files[t->counted[i].file], t->counted[i].line);
    return i >= 0;
}

/* Counts one record of file; false (message printed) when it is not one of this model's
 * or conflicts with an earlier record. */
static bool tally_record(prediction_tally *t, prediction *r, int file) {
    const emote_model *model = t->s->model;
    const char *label = r->error ? NULL : t->labels.names[r->label];
    int predicted = label ? label_index(model, label, strlen(label)) : -1;
    if (label && predicted < 0) {
        print_errorf("%s:%ld: not a prediction record of this model: its label '%s' is not one of the model's labels",
                     t->files[file], r->line, label);
        return false;
    }
    bool conflict;
    if (seen_before(t, r, file, &conflict)) return !conflict;
    int truth = folder_label(model, r->path);
    if (truth < 0) {
        t->outside++;
    } else if (r->error) {
        print_input_error(r->path, r->error);
        if (strcmp(r->error, NO_FACE_MESSAGE) != 0 || t->require_face) t->failed++;
    } else {
        confusion_add(&t->s->confusion, truth, predicted);
    }
    if (!remember(t, r, file)) {
        fprintf(stderr, "emote: out of memory\n");
        return false;
    }
    return true;
}

/* Counts the main face of the image whose face records were gathered. */
static bool tally_main_face(prediction_tally *t, int file) {
    if (t->num_faces == 0) return true;
    emote_face *faces = calloc_array((size_t)t->num_faces, sizeof *faces);
    bool ok = faces != NULL;
    for (int i = 0; ok && i < t->num_faces; i++) {
        const prediction *r = &t->faces[i];
        faces[i] = (emote_face){.x = r->box[0], .y = r->box[1], .w = r->box[2], .h = r->box[3], .score = r->face_score};
    }
    if (!ok) fprintf(stderr, "emote: out of memory\n");
    else ok = tally_record(t, &t->faces[emote_main_face(faces, t->num_faces)], file);
    free(faces);
    drop_faces(t);
    return ok;
}

/* Takes one record (moved in): a face record joins its image's group, anything else (or
 * the next image's first face) closes that group first. */
static bool take_record(prediction_tally *t, prediction *r, int file) {
    bool same_image = r->face >= 0 && t->num_faces > 0 && strcmp(t->faces[0].path, r->path) == 0;
    bool ok = same_image || tally_main_face(t, file);
    if (ok && r->face >= 0) {
        prediction *faces = array_reserve_one(t->faces, t->num_faces, &t->faces_capacity, sizeof *faces);
        if (!faces) {
            fprintf(stderr, "emote: out of memory\n");
            prediction_free(r);
            return false;
        }
        t->faces = faces;
        faces[t->num_faces++] = *r;
        return true;
    }
    if (ok) ok = tally_record(t, r, file);
    prediction_free(r);
    return ok;
}

/* Reads and counts every record of path ("-": stdin). */
static bool read_predictions(prediction_tally *t, const char *path) {
    char **files = array_reserve_one(t->files, t->num_files, &t->files_capacity, sizeof *files);
    if (files) t->files = files;
    char *name = files ? str_dup(strcmp(path, "-") ? path : "<stdin>") : NULL;
    if (!name) {
        fprintf(stderr, "emote: out of memory\n");
        return false;
    }
    int file = t->num_files++;
    files[file] = name;
    prediction_reader reader;
    emote_error err;
    emote_status s = prediction_reader_open(&reader, path, &t->labels, &err);
    prediction r;
    bool ok = true;
    for (bool got; ok && !s && !(s = prediction_reader_next(&reader, &r, &got, &err)) && got;)
        ok = take_record(t, &r, file);
    if (ok && !s) ok = tally_main_face(t, file);
    if (s) print_error(err.message);
    prediction_reader_close(&reader);
    return ok && !s;
}

/* Reads every file that the patterns name (each expanded with glob(3), in sorted order;
 * "-" is stdin). */
static bool read_all_predictions(prediction_tally *t, char **patterns, int count) {
    bool ok = true;
    for (int i = 0; ok && i < count; i++) {
        if (strcmp(patterns[i], "-") == 0) {
            ok = read_predictions(t, "-");
            continue;
        }
        glob_t g;
        int r = glob(patterns[i], GLOB_ERR, NULL, &g);
        if (r != 0)
            print_errorf("%s: %s", patterns[i], r == GLOB_NOMATCH ? "no such prediction file" : "cannot expand the pattern");
        ok = r == 0;
        for (size_t k = 0; ok && k < g.gl_pathc; k++) ok = read_predictions(t, g.gl_pathv[k]);
        if (r != GLOB_NOMATCH) globfree(&g);
    }
    if (ok && t->outside && !t->s->quiet)
        fprintf(stderr, "emote: warning: skipping %ld records whose path is not in a folder named after a label\n",
                t->outside);
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
    emote_model *model = emote_model_open_any(engine_model_name(o), &err);
    if (!model) {
        print_error(err.message);
        return EXIT_FATAL;
    }
    eval_state s = {.model = model, .quiet = o->quiet};
    prediction_tally t = {.s = &s, .require_face = o->faces.require};
    int status = EXIT_FATAL;
    if (confusion_init(&s.confusion, emote_model_num_classes(model)) && read_all_predictions(&t, patterns, count))
        status = report(&s, t.failed, eo, model);
    tally_free(&t);
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
    o.faces.main_face_only = true; /* --faces: one face per image (emote_main_face) */
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
