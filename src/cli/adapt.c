/* emote adapt DIR -o MODEL: fits a new head (the last dense layer) on the base model's
 * features of the images of DIR/<label>/ and writes the base with that head as a new model file. The
 * library does the work: features on the reading pipeline (engine.features), the fit and
 * cross-validation (src/head_fit.c), the writer (emote_model_write_head). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "graph.h"
#include "head_fit.h"
#include "metrics.h"
#include "progress.h"
#include "string_table.h"
#include "util.h"

static const char usage[] =
    "usage: emote adapt [options] DIR -o MODEL.safetensors\n"
    "\n"
    "Fits the base model to your own labelled faces, with any set of labels: DIR/<label>/*\n"
    "(two or more label folders, as eval reads them). Runs the base model over every image up\n"
    "to its last dense layer, fits a new softmax head on those features (L2-regularised\n"
    "multinomial logistic regression, pulled toward the base's own head for the labels it\n"
    "shares and toward zero for new ones, its strength chosen by k-fold cross-validation)\n"
    "and writes the base with that head and the new labels as MODEL, a model file that\n"
    "works wherever a model does (-m MODEL). Prints the cross-validated estimate.\n"
    "\n"
    "  -o, --output MODEL     the model file to write (required)\n"
    "      --force            replace MODEL if it exists\n"
    "      --cv K             folds of the cross-validation, 2..100 (default 5); every label\n"
    "                         needs at least K images\n"
    "      --group REGEX      the part of each file name that names the person (POSIX\n"
    "                         extended regex, e.g. '^S[0-9]+'): a person's images never fall on\n"
    "                         both sides of a fold; without it the estimate is optimistic when\n"
    "                         one person has many images\n"
    "      --class-weights W  balanced: every label counts the same however many images it\n"
    "                         has (default); none: every image counts the same, so the\n"
    "                         folders' proportions become the head's priors\n"
    "  -f, --format F         text | json (default text)\n"
    "  -m, --model MODEL      the base: a built-in model (fer2013, ferplus, fer2013-faces) or a\n"
    "                         model file (default: $EMOTE_MODEL, else fer2013; with --faces,\n"
    "                         ferplus)\n"
    "      --tta              add each image's mirror image to the training set\n"
    "      --faces            the main face of each photo, found and cropped as eval does\n"
    "      --min-face-score S detector score threshold, 0..1 (default 0.4)\n"
    "      --detect-size N    shrink each image to at most N pixels for detection (default 640)\n"
    "  -b, --batch N          images per forward pass (default 32)\n"
    "  -j, --threads N        worker threads (default 0 = one per CPU)\n"
    "      --readers N        threads reading and decoding ahead of the model (default: two\n"
    "                         per CPU, 8 to 64; 0 = read between forward passes)\n"
    "      --no-exif          ignore a JPEG's EXIF orientation\n"
    "  -q, --quiet            no warnings on stderr (errors are still printed)\n"
    "      --progress         show progress on stderr even off a terminal or with -q\n"
    "      --no-progress      never show it\n"
    "  -h, --help             this help\n"
    "\n"
    "Exit status: 0 ok; 1 some images could not be read (named on stderr, skipped; the model\n"
    "is written from the rest); 2 usage error (also: -o naming the base model or a file in\n"
    "DIR); 3 fatal: no model written (MODEL exists without --force, fewer than two labels, a\n"
    "label with fewer images than folds, no image decoded, fewer groups than folds, a base\n"
    "without a final dense layer, MODEL not writable).\n"
    "\n"
    "Examples:\n"
    "  emote adapt my-faces/ -o mine.safetensors && emote -m mine.safetensors photo.png\n"
    "  emote adapt --cv 10 --group '^S[0-9]+' -f json lab-set/ -o lab.safetensors\n"
    "  emote adapt --faces photos-by-label/ -o photos.safetensors\n";

typedef struct {
    output_format format;
    const char *output, *group_pattern;
    bool force;
    int folds;
    class_weighting weighting;
} adapt_options;

/* The training set as it grows: one row of features per image (two with --tta). */
typedef struct {
    const char *root;
    char **labels;
    int num_labels;
    int dims, rows_per_image;
    float *x;
    int *y, *group_of;
    long rows, capacity;
    long *images_per_label;
    regex_t group_regex;
    bool grouped;
    string_table groups; /* group name -> id; names owned by group_names */
    char **group_names;
    int num_groups, group_capacity;
    long unmatched; /* images whose name does not match --group: each its own group */
    long failed;
    bool out_of_memory;
    progress_bar progress;
} training_set;

/* ---- label folders ----------------------------------------------------------------- */

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The folders of DIR (not starting with '.'), sorted: the labels. -1 after a message. */
static int list_label_folders(const char *dir, bool quiet, char ***out) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "emote: %s: cannot read directory: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    int count = 0, capacity = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(dir, e->d_name);
        struct stat st;
        bool is_dir = path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        free(path);
        if (!is_dir) {
            if (!quiet) fprintf(stderr, "emote: warning: skipping %s/%s: not a label folder\n", dir, e->d_name);
            continue;
        }
        char **grown = array_reserve_one(names, count, &capacity, sizeof *names);
        if (!grown || !(grown[count] = str_dup(e->d_name))) {
            names = grown ? grown : names;
            count = -1;
            break;
        }
        names = grown;
        count++;
    }
    closedir(d);
    if (count < 0) fprintf(stderr, "emote: out of memory\n");
    else if (count > 1) qsort(names, (size_t)count, sizeof *names, compare_names);
    *out = names;
    return count;
}

static bool check_labels(const char *dir, char **labels, int count) {
    if (count < 2) {
        fprintf(stderr, "emote: %s: %d label folder%s; adapt needs two or more (DIR/<label>/images)\n", dir, count,
                count == 1 ? "" : "s");
        return false;
    }
    for (int i = 0; i < count; i++) {
        const char *problem = model_label_problem(labels[i]);
        if (problem) {
            fprintf(stderr, "emote: %s/%s: a label folder's name %s\n", dir, labels[i], problem);
            return false;
        }
    }
    return true;
}

/* ---- collecting features ---------------------------------------------------------------- */

/* The label folder a path lies in: the first component after "root/". */
static int label_of(const training_set *t, const char *path) {
    const char *rest = path + strlen(t->root);
    while (*rest == '/') rest++;
    size_t len = strcspn(rest, "/");
    for (int k = 0; k < t->num_labels; k++)
        if (strlen(t->labels[k]) == len && !strncmp(t->labels[k], rest, len)) return k;
    return -1;
}

/* The group of an image: what --group matches in its file name, else the image itself. */
static int group_of(training_set *t, const char *path) {
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    regmatch_t match;
    char *key;
    if (t->grouped && regexec(&t->group_regex, name, 1, &match, 0) == 0 && match.rm_eo > match.rm_so) {
        key = malloc((size_t)(match.rm_eo - match.rm_so) + 2);
        if (key) snprintf(key, (size_t)(match.rm_eo - match.rm_so) + 2, "=%.*s", (int)(match.rm_eo - match.rm_so),
                          name + match.rm_so);
    } else {
        t->unmatched += t->grouped;
        size_t need = strlen(path) + 2; /* "/" + path: never equal to a "=" match */
        if ((key = malloc(need))) snprintf(key, need, "/%s", path);
    }
    char **names = key ? array_reserve_one(t->group_names, t->num_groups, &t->group_capacity, sizeof *names) : NULL;
    if (!names) {
        free(key);
        return -1;
    }
    t->group_names = names;
    int id = table_add(&t->groups, key, t->num_groups);
    if (id == t->num_groups) t->group_names[t->num_groups++] = key;
    else free(key);
    return id;
}

static bool reserve_rows(training_set *t, long more) {
    if (t->rows + more <= t->capacity) return true;
    long capacity = t->capacity ? t->capacity * 2 : 1024;
    if (capacity < t->rows + more) capacity = t->rows + more;
    float *x = realloc_array(t->x, (size_t)capacity, (size_t)t->dims * sizeof(float));
    if (x) t->x = x;
    int *y = realloc_array(t->y, (size_t)capacity, sizeof(int));
    if (y) t->y = y;
    int *g = realloc_array(t->group_of, (size_t)capacity, sizeof(int));
    if (g) t->group_of = g;
    if (!x || !y || !g) return false;
    t->capacity = capacity;
    return true;
}

static bool add_image(training_set *t, const result *r) {
    int label = label_of(t, r->path), group = group_of(t, r->path);
    if (label < 0 || group < 0 || !reserve_rows(t, t->rows_per_image)) return false;
    for (int i = 0; i < t->rows_per_image; i++, t->rows++) {
        memcpy(t->x + (size_t)t->rows * t->dims, r->features + (size_t)i * t->dims, (size_t)t->dims * sizeof(float));
        t->y[t->rows] = label;
        t->group_of[t->rows] = group;
    }
    t->images_per_label[label]++;
    return true;
}

static bool collect(void *user, const result *r) {
    training_set *t = user;
    if (r->error) {
        progress_clear(&t->progress);
        print_input_error(r->path, r->error);
        t->failed++;
    } else if (!add_image(t, r)) {
        t->out_of_memory = true;
        return false;
    }
    progress_tick(&t->progress);
    return true;
}

static void training_set_free(training_set *t) {
    for (int i = 0; i < t->num_labels; i++) free(t->labels[i]);
    free(t->labels);
    free(t->x);
    free(t->y);
    free(t->group_of);
    free(t->images_per_label);
    table_free(&t->groups);
    for (int i = 0; i < t->num_groups; i++) free(t->group_names[i]);
    free(t->group_names);
    if (t->grouped) regfree(&t->group_regex);
}

/* Every label has at least one image per fold, and there are enough groups. */
static bool check_counts(const training_set *t, int folds) {
    if (t->rows == 0) {
        fprintf(stderr, "emote: %s: no image could be decoded\n", t->root);
        return false;
    }
    for (int k = 0; k < t->num_labels; k++)
        if (t->images_per_label[k] < folds) {
            fprintf(stderr, "emote: %s/%s: %ld image%s, fewer than the %d folds of --cv (each fold needs one)\n",
                    t->root, t->labels[k], t->images_per_label[k], t->images_per_label[k] == 1 ? "" : "s", folds);
            return false;
        }
    if (t->num_groups < folds) {
        fprintf(stderr, "emote: %s: %d groups (--group), fewer than the %d folds of --cv\n", t->root, t->num_groups,
                folds);
        return false;
    }
    return true;
}

/* ---- fitting -------------------------------------------------------------------------- */

typedef struct {
    softmax_head prior;        /* the base's own head for the labels it shares, zero rows elsewhere */
    bool *label_in_base;       /* per new label */
    int labels_in_base;
    cv_summary cv;
    confusion_matrix confusion; /* out-of-fold predictions, one per image (not its mirror) */
    metrics_summary metrics;
    softmax_head head;
} adaptation;

/* The base's class with this label, or -1. */
static int base_class_of(const emote_model *base, const char *label) {
    for (int c = 0; c < emote_model_num_classes(base); c++)
        if (!strcmp(emote_model_label(base, c), label)) return c;
    return -1;
}

/* The prior the fit pulls toward: the base's last dense layer's row (and bias) for each label
 * the base has by name. false when out of memory. */
static bool take_base_head(const training_set *t, const emote_model *base, adaptation *a) {
    if (!head_alloc(&a->prior, t->num_labels, t->dims) ||
        !(a->label_in_base = calloc_array((size_t)t->num_labels, sizeof(bool))))
        return false;
    const dense_layer *dense = &base->ops[model_head_op(base)].u.linear;
    for (int k = 0; k < t->num_labels; k++) {
        int c = base_class_of(base, t->labels[k]);
        if (c < 0) continue;
        for (int j = 0; j < t->dims; j++) a->prior.weight[(size_t)k * t->dims + j] = dense->weight[(size_t)c * t->dims + j];
        a->prior.bias[k] = dense->bias ? dense->bias[c] : 0;
        a->label_in_base[k] = true;
        a->labels_in_base++;
    }
    return true;
}

static fit_data training_data(const training_set *t, const adaptation *a, class_weighting weighting) {
    return (fit_data){(int)t->rows,     t->dims,   t->num_labels, t->x, t->y, weighting,
                      a->labels_in_base ? &a->prior : NULL, a->label_in_base};
}

static bool cross_validate(const training_set *t, const adapt_options *ao, adaptation *a) {
    const int folds = ao->folds;
    fit_data d = training_data(t, a, ao->weighting);
    int *fold_of = alloc_array((size_t)t->rows, sizeof(int)), *predicted = alloc_array((size_t)t->rows, sizeof(int));
    bool ok = fold_of && predicted && confusion_init(&a->confusion, t->num_labels) &&
              assign_folds(t->y, t->group_of, d.rows, d.classes, t->num_groups, folds, fold_of) &&
              head_cross_validate(&d, fold_of, folds, predicted, &a->cv);
    for (long i = 0; ok && i < t->rows; i += t->rows_per_image) confusion_add(&a->confusion, t->y[i], predicted[i]);
    free(fold_of);
    free(predicted);
    return ok && metrics_compute(&a->confusion, &a->metrics);
}

static bool fit_final_head(const training_set *t, const adapt_options *ao, adaptation *a) {
    fit_data d = training_data(t, a, ao->weighting);
    return head_alloc(&a->head, t->num_labels, t->dims) && head_fit(&d, fit_lambdas[a->cv.best], &a->head);
}

static void adaptation_free(adaptation *a) {
    head_free(&a->prior);
    free(a->label_in_base);
    confusion_free(&a->confusion);
    metrics_free(&a->metrics);
    head_free(&a->head);
}

/* ---- the model file ------------------------------------------------------------------- */

static const char *class_weighting_name(class_weighting w) { return w == CLASS_WEIGHTS_NONE ? "none" : "balanced"; }

/* The command line as a shell would take it back: words with odd characters in single quotes. */
static char *command_line(int argc, char **argv) {
    size_t need = sizeof "emote";
    for (int i = 0; i < argc; i++) need += 4 * strlen(argv[i]) + 3;
    char *out = malloc(need), *p = out;
    if (!out) return NULL;
    p += sprintf(p, "emote");
    for (int i = 0; i < argc; i++) {
        bool plain = argv[i][0] && strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                    "-_./=:+,@%") == strlen(argv[i]);
        *p++ = ' ';
        if (!plain) *p++ = '\'';
        for (const char *c = argv[i]; *c; c++) p += *c == '\'' && !plain ? sprintf(p, "'\\''") : sprintf(p, "%c", *c);
        if (!plain) *p++ = '\'';
    }
    *p = '\0';
    return out;
}

static cJSON *metrics_json(const training_set *t, const adaptation *a, int folds) {
    cJSON *m = cJSON_CreateObject(), *recall = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "cv_accuracy", a->metrics.accuracy);
    cJSON_AddNumberToObject(m, "cv_mean_recall", a->metrics.mean_recall);
    cJSON_AddNumberToObject(m, "cv_macro_f1", a->metrics.macro_f1);
    cJSON_AddNumberToObject(m, "cv_folds", folds);
    for (int k = 0; k < t->num_labels; k++) cJSON_AddNumberToObject(recall, t->labels[k], a->metrics.per_class[k].recall);
    cJSON_AddItemToObject(m, "cv_recall", recall);
    return m;
}

static cJSON *provenance_json(const training_set *t, const adaptation *a, const adapt_options *ao,
                              const emote_model *base, const char *command) {
    cJSON *p = cJSON_CreateObject(), *per_label = cJSON_CreateObject();
    char sha[65], when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    emote_model_sha256(base, sha);
    cJSON_AddStringToObject(p, "data", t->root);
    cJSON_AddStringToObject(p, "command", command);
    cJSON_AddStringToObject(p, "adapted", when);
    cJSON_AddStringToObject(p, "base_model", emote_model_name(base));
    cJSON_AddStringToObject(p, "base_sha256", sha);
    for (int k = 0; k < t->num_labels; k++) cJSON_AddNumberToObject(per_label, t->labels[k], (double)t->images_per_label[k]);
    cJSON_AddItemToObject(p, "images_per_label", per_label);
    cJSON_AddNumberToObject(p, "images_failed", (double)t->failed);
    cJSON_AddBoolToObject(p, "mirrored_images_added", t->rows_per_image == 2);
    cJSON_AddNumberToObject(p, "l2_strength", fit_lambdas[a->cv.best]);
    cJSON_AddStringToObject(p, "class_weights", class_weighting_name(ao->weighting));
    cJSON *from_base = cJSON_AddArrayToObject(p, "labels_from_base");
    for (int k = 0; from_base && k < t->num_labels; k++)
        if (a->label_in_base[k]) cJSON_AddItemToArray(from_base, cJSON_CreateString(t->labels[k]));
    cJSON_AddNumberToObject(p, "cv_accuracy", a->metrics.accuracy);
    cJSON_AddNumberToObject(p, "cv_folds", ao->folds);
    if (ao->group_pattern) cJSON_AddStringToObject(p, "cv_group", ao->group_pattern);
    cJSON *base_provenance = cJSON_Parse(emote_model_metadata(base, "provenance") ? emote_model_metadata(base, "provenance") : "");
    if (base_provenance) cJSON_AddItemToObject(p, "base_provenance", base_provenance);
    return p;
}

static char *print_and_delete(cJSON *json) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    return text;
}

static bool write_model(const training_set *t, const adaptation *a, const adapt_options *ao, const emote_model *base,
                        const char *command) {
    size_t n = (size_t)t->num_labels * t->dims;
    float *weight = alloc_array(n, sizeof(float)), *bias = alloc_array((size_t)t->num_labels, sizeof(float));
    char *provenance = print_and_delete(provenance_json(t, a, ao, base, command));
    char *metrics = print_and_delete(metrics_json(t, a, ao->folds));
    bool ok = weight && bias && provenance && metrics;
    if (!ok) fprintf(stderr, "emote: out of memory\n");
    for (size_t i = 0; ok && i < n; i++) weight[i] = (float)a->head.weight[i];
    for (int k = 0; ok && k < t->num_labels; k++) bias[k] = (float)a->head.bias[k];
    const char *keys[] = {"provenance", "metrics"}, *values[] = {provenance, metrics};
    emote_head head = {t->num_labels, (const char *const *)t->labels, weight, bias, 2, keys, values};
    emote_error err;
    if (ok && emote_model_write_head(base, &head, ao->output, ao->force, &err)) {
        if (strstr(err.message, ": exists"))
            fprintf(stderr, "emote: %s: exists; give --force to replace it\n", ao->output);
        else
            fprintf(stderr, "emote: %s\n", err.message);
        ok = false;
    }
    free(weight);
    free(bias);
    free(provenance);
    free(metrics);
    return ok;
}

/* ---- report ----------------------------------------------------------------------------- */

static void print_report(const training_set *t, const adaptation *a, const adapt_options *ao, const emote_model *base) {
    const char *const *labels = (const char *const *)t->labels;
    if (ao->format == FORMAT_JSON) {
        char sha[65];
        emote_model_sha256(base, sha);
        printf("{\"output\":");
        json_write_string(stdout, ao->output);
        printf(",\"base_model\":");
        json_write_string(stdout, emote_model_name(base));
        printf(",\"base_sha256\":\"%s\",\"folds\":%d,\"group\":", sha, ao->folds);
        if (ao->group_pattern) json_write_string(stdout, ao->group_pattern);
        else printf("null");
        printf(",\"l2_strength\":%.17g,\"class_weights\":\"%s\",\"labels_from_base\":[", fit_lambdas[a->cv.best],
               class_weighting_name(ao->weighting));
        for (int k = 0, first = 1; k < t->num_labels; k++)
            if (a->label_in_base[k]) {
                printf(first ? "" : ",");
                json_write_string(stdout, t->labels[k]);
                first = 0;
            }
        printf("],\"mirrored_images_added\":%s,", t->rows_per_image == 2 ? "true" : "false");
        metrics_print_json_fields(stdout, &a->confusion, &a->metrics, labels, t->failed);
        printf("}\n");
        return;
    }
    printf("adapted %s to %d labels on %ld images; wrote %s\n", emote_model_name(base), t->num_labels,
           a->confusion.total, ao->output);
    printf("cross-validated estimate: %d folds, %s; L2 strength %g toward ", ao->folds,
           ao->group_pattern ? "images grouped by --group" : "no --group (optimistic if a person has many images)",
           fit_lambdas[a->cv.best]);
    if (a->labels_in_base) printf("the base's head for %d of %d labels", a->labels_in_base, t->num_labels);
    else printf("zero (no label of the base's)");
    printf(", class weights %s\n\n", class_weighting_name(ao->weighting));
    metrics_print_text(stdout, &a->confusion, &a->metrics, labels, t->failed);
}

/* ---- checks before the run -------------------------------------------------------------- */

/* realpath of path's folder, malloc'd; NULL when it does not exist. */
static char *real_folder_of(const char *path) {
    char *copy = str_dup(path);
    if (!copy) return NULL;
    char *slash = strrchr(copy, '/');
    const char *folder = slash ? (slash == copy ? "/" : (*slash = '\0', copy)) : ".";
    char *real = realpath(folder, NULL);
    free(copy);
    return real;
}

/* -o must not name an input: the base model's file, or anything inside DIR. */
static bool output_names_no_input(const adapt_options *ao, const char *dir, const char *model_path) {
    struct stat out_st, model_st;
    if (model_path && stat(ao->output, &out_st) == 0 && stat(model_path, &model_st) == 0 &&
        out_st.st_dev == model_st.st_dev && out_st.st_ino == model_st.st_ino) {
        fprintf(stderr, "emote: -o %s is the base model (%s); write the adapted model elsewhere\n", ao->output,
                model_path);
        return false;
    }
    char *root = realpath(dir, NULL), *folder = real_folder_of(ao->output);
    size_t n = root ? strlen(root) : 0;
    bool inside = root && folder && !strncmp(folder, root, n) && (folder[n] == '/' || folder[n] == '\0');
    if (inside)
        fprintf(stderr, "emote: -o %s lies inside %s, the images adapt reads; write the model elsewhere\n", ao->output,
                dir);
    free(root);
    free(folder);
    return !inside;
}

/* The model file -m or $EMOTE_MODEL names (NULL for a built-in model). */
static const char *base_model_file(const engine_options *o) {
    const char *name = o->model_path ? o->model_path : getenv("EMOTE_MODEL");
    for (int i = 0; name && emote_builtin_model_name(i); i++)
        if (!strcmp(name, emote_builtin_model_name(i))) return NULL;
    return name && *name ? name : NULL;
}

/* ---- the command ------------------------------------------------------------------------ */

static int adapt(const engine_options *o, const adapt_options *ao, const char *dir, const char *command) {
    training_set t = {.root = dir, .grouped = false};
    if (ao->group_pattern) {
        int code = regcomp(&t.group_regex, ao->group_pattern, REG_EXTENDED);
        if (code) {
            char reason[256];
            regerror(code, &t.group_regex, reason, sizeof reason);
            fprintf(stderr, "emote: --group '%s': %s\n", ao->group_pattern, reason);
            return EXIT_USAGE;
        }
        t.grouped = true;
    }
    int status = EXIT_FATAL;
    engine e = {0};
    adaptation a = {0};
    t.num_labels = list_label_folders(dir, o->quiet, &t.labels);
    if (t.num_labels < 0 || !check_labels(dir, t.labels, t.num_labels) || !engine_open(&e, o)) goto done;
    if (!(t.dims = emote_model_feature_size(e.model))) {
        fprintf(stderr, "emote: %s has no final dense layer (its graph does not end with linear + softmax)\n",
                emote_model_name(e.model));
        goto done;
    }
    e.features = true;
    t.rows_per_image = o->tta ? 2 : 1;
    char **folders = calloc_array((size_t)t.num_labels, sizeof *folders);
    if (!(t.images_per_label = calloc_array((size_t)t.num_labels, sizeof(long))) || !folders) {
        free(folders);
        fprintf(stderr, "emote: out of memory\n");
        goto done;
    }
    bool joined = true;
    for (int k = 0; k < t.num_labels; k++) joined = (folders[k] = join_path(dir, t.labels[k])) && joined;
    if (!joined) {
        for (int k = 0; k < t.num_labels; k++) free(folders[k]);
        free(folders);
        fprintf(stderr, "emote: out of memory\n");
        goto done;
    }
    input_source *src = input_source_new(folders, t.num_labels, o);
    progress_start(&t.progress, o, folders, t.num_labels);
    run_counts counts = classify_inputs(&e, src, collect, &t);
    progress_finish(&t.progress);
    input_source_free(src);
    for (int k = 0; k < t.num_labels; k++) free(folders[k]);
    free(folders);
    t.failed = counts.failed;
    if (t.out_of_memory) fprintf(stderr, "emote: out of memory holding the features\n");
    if (t.out_of_memory || !check_counts(&t, ao->folds)) goto done;
    if (t.unmatched && !o->quiet)
        fprintf(stderr, "emote: warning: %ld file names do not match --group '%s': each is a group of its own\n",
                t.unmatched, ao->group_pattern);
    if (!take_base_head(&t, e.model, &a) || !cross_validate(&t, ao, &a) || !fit_final_head(&t, ao, &a)) {
        fprintf(stderr, "emote: out of memory fitting the head\n");
        goto done;
    }
    if (!write_model(&t, &a, ao, e.model, command)) goto done;
    print_report(&t, &a, ao, e.model);
    status = t.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
done:
    adaptation_free(&a);
    engine_close(&e);
    training_set_free(&t);
    return status;
}

enum { OPT_OUTPUT = 'o', OPT_FORCE = OPTION_COMMAND, OPT_CV, OPT_GROUP, OPT_CLASS_WEIGHTS };

static const struct option option_table[] = {
    {"output", required_argument, NULL, 'o'},
    {"force", no_argument, NULL, OPT_FORCE},
    {"cv", required_argument, NULL, OPT_CV},
    {"group", required_argument, NULL, OPT_GROUP},
    {"class-weights", required_argument, NULL, OPT_CLASS_WEIGHTS},
    {"format", required_argument, NULL, 'f'},
    {"model", required_argument, NULL, 'm'},
    {"batch", required_argument, NULL, 'b'},
    {"threads", required_argument, NULL, 'j'},
    {"readers", required_argument, NULL, OPT_READERS},
    {"tta", no_argument, NULL, OPT_TTA},
    {"no-exif", no_argument, NULL, OPT_NO_EXIF},
    {"quiet", no_argument, NULL, 'q'},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"faces", no_argument, NULL, OPT_FACES},
    {"min-face-score", required_argument, NULL, OPT_MIN_FACE_SCORE},
    {"detect-size", required_argument, NULL, OPT_DETECT_SIZE},
    HELP_OPTION,
    {0}};

static int cmd_adapt(int argc, char **argv);
const command adapt_command = {"adapt", cmd_adapt, option_table};

static bool parse_class_weighting(const char *value, class_weighting *out) {
    if (!strcmp(value, "balanced") || !strcmp(value, "none")) {
        *out = !strcmp(value, "none") ? CLASS_WEIGHTS_NONE : CLASS_WEIGHTS_BALANCED;
        return true;
    }
    fprintf(stderr, "emote: --class-weights needs balanced or none (got '%s')\n", value);
    return false;
}

/* -1 to go on, else the exit status (help or a usage error). */
static int parse_arguments(int argc, char **argv, engine_options *o, adapt_options *ao, const char **dir) {
    option_parser p;
    options_start(&p, &adapt_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        switch (code) {
        case OPTIONS_OPERAND:
            if (*dir) {
                fprintf(stderr, "emote: adapt takes one directory (got '%s' and '%s')\n", *dir, p.value);
                return EXIT_USAGE;
            }
            *dir = p.value;
            break;
        case 'h': fputs(usage, stdout); return EXIT_ALL_OK;
        case 'o': ao->output = p.value; break;
        case OPT_FORCE: ao->force = true; break;
        case OPT_GROUP: ao->group_pattern = p.value; break;
        case OPT_CV:
            if (!parse_int_option(p.name, p.value, 2, 100, &ao->folds)) return EXIT_USAGE;
            break;
        case OPT_CLASS_WEIGHTS:
            if (!parse_class_weighting(p.value, &ao->weighting)) return EXIT_USAGE;
            break;
        case 'f':
            if (!parse_report_format(&p, &ao->format)) return EXIT_USAGE;
            break;
        default:
            if (!engine_option(o, &p, code)) return EXIT_USAGE;
        }
    }
    if (!*dir || !ao->output) {
        fprintf(stderr, "emote: adapt needs %s (see emote adapt --help)\n",
                !*dir ? "a directory, DIR/<label>/images" : "-o MODEL.safetensors, the model file to write");
        return EXIT_USAGE;
    }
    return -1;
}

static int cmd_adapt(int argc, char **argv) {
    engine_options o = ENGINE_OPTIONS_DEFAULT;
    o.faces.main_face_only = true; /* --faces: the main face of each image (emote_main_face), as eval */
    adapt_options ao = {.format = FORMAT_TABLE, .folds = 5};
    const char *dir = NULL;
    int status = parse_arguments(argc, argv, &o, &ao, &dir);
    if (status >= 0) return status;
    if (!output_names_no_input(&ao, dir, base_model_file(&o))) return EXIT_USAGE;
    struct stat st;
    if (!ao.force && lstat(ao.output, &st) == 0) {
        fprintf(stderr, "emote: %s: exists; give --force to replace it\n", ao.output);
        return EXIT_FATAL;
    }
    char *command = command_line(argc, argv);
    if (!command) {
        fprintf(stderr, "emote: out of memory\n");
        return EXIT_FATAL;
    }
    status = adapt(&o, &ao, dir, command);
    free(command);
    return status;
}
