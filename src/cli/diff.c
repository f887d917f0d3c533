/* emote diff OLD NEW: compares two `emote classify -f jsonl` prediction files, record by
 * path: changed top labels, the largest probability change, paths present in only one
 * file and inputs that fail in only one. Over its limits it exits 4, a CI gate. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "predictions.h"
#include "util.h"

static const char usage[] =
    "usage: emote diff [options] OLD NEW\n"
    "\n"
    "Compares two prediction files written by 'emote classify -f jsonl' (either may be '-'\n"
    "for stdin). Records are matched by path; it reports inputs whose top label changed,\n"
    "the largest absolute probability change over all matched records and labels, paths\n"
    "found in only one file, inputs that failed in only one file, and (as warnings) paths\n"
    "repeated within a file, of which the first record is compared. A label missing from\n"
    "one record of a pair counts as probability 0 there. Each line is checked: at most\n"
    "16 MiB, valid JSON, probabilities numbers in [0, 1] (1e-6 of rounding allowed above 1);\n"
    "OLD and NEW must be regular files (or '-').\n"
    "\n"
    "  -f, --format F       text | json (default text)\n"
    "      --max-changed N  allow up to N changed top labels (default 0)\n"
    "      --tolerance T    allow probability changes up to T (0..1; default: any)\n"
    "  -h, --help           this help\n"
    "\n"
    "The two files must hold the same set of paths, each failing in both or in neither:\n"
    "a path in only one file, or an error record facing a prediction, fails the check.\n"
    "\n"
    "Exit status: 0 within the limits; 2 usage error; 3 a file is unreadable or has a\n"
    "malformed line (the message names file and line); 4 over a limit, or the sets of\n"
    "paths or failures differ.\n"
    "\n"
    "Examples:\n"
    "  emote -f jsonl -m old.safetensors faces/ > old.jsonl\n"
    "  emote -f jsonl -m new.safetensors faces/ > new.jsonl\n"
    "  emote diff old.jsonl new.jsonl\n"
    "  emote diff --max-changed 5 --tolerance 0.05 -f json old.jsonl new.jsonl\n";

/* ---- comparison ---------------------------------------------------------------------- */

typedef struct {
    int old_index, new_index; /* -1 for the side a path is missing from */
} record_pair;

typedef struct {
    record_pair *items;
    int count, capacity;
} pair_list;

typedef struct {
    pair_list changed, only_old, only_new, failed_old_only, failed_new_only;
    int compared, both_failed;
    double max_change;
    int max_change_old, max_change_label; /* where max_change happened; -1 while it is 0 */
    bool out_of_memory;
} diff_result;

static void pair_list_add(pair_list *l, int old_index, int new_index, bool *out_of_memory) {
    record_pair *items = array_reserve_one(l->items, l->count, &l->capacity, sizeof(record_pair));
    if (!items) {
        *out_of_memory = true;
        return;
    }
    l->items = items;
    items[l->count++] = (record_pair){old_index, new_index};
}

static void diff_result_free(diff_result *d) {
    pair_list *lists[] = {&d->changed, &d->only_old, &d->only_new, &d->failed_old_only, &d->failed_new_only};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) free(lists[i]->items);
}

/* Per-label probabilities of the pair being compared, indexed by label id, zero between uses. */
typedef struct {
    double *old_probs, *new_probs;
} prob_scratch;

static void track_max_change(diff_result *d, const prob_scratch *s, const prediction *r, int old_index) {
    for (int k = 0; k < r->num_probs; k++) {
        int label = r->probs[k].label;
        double change = fabs(s->old_probs[label] - s->new_probs[label]);
        if (change > d->max_change) {
            d->max_change = change;
            d->max_change_old = old_index;
            d->max_change_label = label;
        }
    }
}

static void spread_probs(double *by_label, const prediction *r) {
    for (int k = 0; k < r->num_probs; k++) by_label[r->probs[k].label] = r->probs[k].prob;
}

static void clear_probs(prob_scratch *s, const prediction *r) {
    for (int k = 0; k < r->num_probs; k++) s->old_probs[r->probs[k].label] = s->new_probs[r->probs[k].label] = 0;
}

/* Labels present in only one of the two records count as probability 0 in the other. */
static void compare_probs(diff_result *d, prob_scratch *s, const prediction *o, const prediction *n, int old_index) {
    spread_probs(s->old_probs, o);
    spread_probs(s->new_probs, n);
    track_max_change(d, s, o, old_index);
    track_max_change(d, s, n, old_index);
    clear_probs(s, o);
    clear_probs(s, n);
}

static void compare_pair(diff_result *d, prob_scratch *s, const prediction *o, const prediction *n, int oi, int ni) {
    if (o->error && n->error) d->both_failed++;
    else if (o->error) pair_list_add(&d->failed_old_only, oi, ni, &d->out_of_memory);
    else if (n->error) pair_list_add(&d->failed_new_only, oi, ni, &d->out_of_memory);
    else {
        d->compared++;
        if (o->label != n->label) pair_list_add(&d->changed, oi, ni, &d->out_of_memory);
        compare_probs(d, s, o, n, oi);
    }
}

/* Matches the first record of every path in OLD with NEW's, in OLD's order. */
static bool diff_files(const prediction_file *old, const prediction_file *new, int num_labels, diff_result *d) {
    memset(d, 0, sizeof *d);
    d->max_change_old = d->max_change_label = -1;
    prob_scratch s = {calloc_array((size_t)num_labels + 1, sizeof(double)),
                      calloc_array((size_t)num_labels + 1, sizeof(double))};
    d->out_of_memory = !s.old_probs || !s.new_probs;
    for (int oi = 0; oi < old->count && !d->out_of_memory; oi++) {
        const prediction *o = &old->records[oi];
        if (o->first != oi) continue;
        int ni = table_find(&new->by_path, o->path);
        if (ni < 0) pair_list_add(&d->only_old, oi, -1, &d->out_of_memory);
        else compare_pair(d, &s, o, &new->records[ni], oi, ni);
    }
    for (int ni = 0; ni < new->count && !d->out_of_memory; ni++) {
        const prediction *n = &new->records[ni];
        if (n->first == ni && table_find(&old->by_path, n->path) < 0)
            pair_list_add(&d->only_new, -1, ni, &d->out_of_memory);
    }
    free(s.old_probs);
    free(s.new_probs);
    if (d->out_of_memory) fprintf(stderr, "emote: out of memory comparing %s and %s\n", old->name, new->name);
    return !d->out_of_memory;
}

/* ---- reports ---------------------------------------------------------------------------- */

typedef struct {
    const prediction_file *old, *new;
    const label_set *labels;
    const diff_result *result;
    int max_changed;
    double tolerance; /* < 0: no limit */
} diff_report;

static const prediction *old_record(const diff_report *r, record_pair p) { return &r->old->records[p.old_index]; }
static const prediction *new_record(const diff_report *r, record_pair p) { return &r->new->records[p.new_index]; }

static void print_text(const diff_report *r) {
    const diff_result *d = r->result;
    const char *const *names = (const char *const *)r->labels->names;
    for (int i = 0; i < d->changed.count; i++) {
        const prediction *o = old_record(r, d->changed.items[i]), *n = new_record(r, d->changed.items[i]);
        printf("changed             %s  %s %.4f -> %s %.4f\n", o->path, names[o->label], o->confidence,
               names[n->label], n->confidence);
    }
    for (int i = 0; i < d->only_old.count; i++)
        printf("only in OLD         %s\n", old_record(r, d->only_old.items[i])->path);
    for (int i = 0; i < d->only_new.count; i++)
        printf("only in NEW         %s\n", new_record(r, d->only_new.items[i])->path);
    for (int i = 0; i < d->failed_old_only.count; i++) {
        const prediction *o = old_record(r, d->failed_old_only.items[i]);
        printf("failed in OLD only  %s  (%s)\n", o->path, o->error);
    }
    for (int i = 0; i < d->failed_new_only.count; i++) {
        const prediction *n = new_record(r, d->failed_new_only.items[i]);
        printf("failed in NEW only  %s  (%s)\n", n->path, n->error);
    }
    printf("%d of %d labels changed; max probability change %.3g", d->changed.count, d->compared, d->max_change);
    if (d->max_change_old >= 0)
        printf(" (%s, %s)", r->old->records[d->max_change_old].path, names[d->max_change_label]);
    printf("; %d only in OLD, %d only in NEW", d->only_old.count, d->only_new.count);
    if (d->failed_old_only.count || d->failed_new_only.count)
        printf("; %d failed in OLD only, %d failed in NEW only", d->failed_old_only.count, d->failed_new_only.count);
    putchar('\n');
}

static void json_write_prediction(const diff_report *r, const prediction *rec) {
    printf("{\"label\":");
    json_write_string(stdout, r->labels->names[rec->label]);
    printf(",\"confidence\":%.17g}", rec->confidence);
}

static void json_write_paths(const char *key, const diff_report *r, const pair_list *l, bool old_side) {
    printf(",\"%s\":[", key);
    for (int i = 0; i < l->count; i++) {
        if (i) putchar(',');
        json_write_string(stdout, (old_side ? old_record(r, l->items[i]) : new_record(r, l->items[i]))->path);
    }
    putchar(']');
}

static void json_write_failures(const char *key, const diff_report *r, const pair_list *l, bool old_side) {
    printf(",\"%s\":[", key);
    for (int i = 0; i < l->count; i++) {
        const prediction *rec = old_side ? old_record(r, l->items[i]) : new_record(r, l->items[i]);
        printf("%s{\"path\":", i ? "," : "");
        json_write_string(stdout, rec->path);
        printf(",\"error\":");
        json_write_string(stdout, rec->error);
        putchar('}');
    }
    putchar(']');
}

static void json_write_duplicates(const char *key, const prediction_file *f) {
    printf(",\"%s\":[", key);
    bool first = true;
    for (int i = 0; i < f->count; i++) {
        if (f->records[i].first == i) continue;
        if (!first) putchar(',');
        json_write_string(stdout, f->records[i].path);
        first = false;
    }
    putchar(']');
}

static void print_json(const diff_report *r, bool within_limits) {
    const diff_result *d = r->result;
    printf("{\"old\":");
    json_write_string(stdout, r->old->name);
    printf(",\"new\":");
    json_write_string(stdout, r->new->name);
    printf(",\"compared\":%d,\"changed_count\":%d,\"changed\":[", d->compared, d->changed.count);
    for (int i = 0; i < d->changed.count; i++) {
        printf("%s{\"path\":", i ? "," : "");
        json_write_string(stdout, old_record(r, d->changed.items[i])->path);
        printf(",\"old\":");
        json_write_prediction(r, old_record(r, d->changed.items[i]));
        printf(",\"new\":");
        json_write_prediction(r, new_record(r, d->changed.items[i]));
        putchar('}');
    }
    printf("],\"max_prob_change\":{\"value\":%.17g,\"path\":", d->max_change);
    if (d->max_change_old < 0) {
        printf("null,\"label\":null}");
    } else {
        json_write_string(stdout, r->old->records[d->max_change_old].path);
        printf(",\"label\":");
        json_write_string(stdout, r->labels->names[d->max_change_label]);
        putchar('}');
    }
    json_write_paths("only_in_old", r, &d->only_old, true);
    json_write_paths("only_in_new", r, &d->only_new, false);
    json_write_failures("failed_in_old_only", r, &d->failed_old_only, true);
    json_write_failures("failed_in_new_only", r, &d->failed_new_only, false);
    printf(",\"both_failed\":%d", d->both_failed);
    json_write_duplicates("duplicates_in_old", r->old);
    json_write_duplicates("duplicates_in_new", r->new);
    printf(",\"limits\":{\"max_changed\":%d,\"tolerance\":", r->max_changed);
    if (r->tolerance < 0) printf("null");
    else printf("%.17g", r->tolerance);
    printf("},\"within_limits\":%s}\n", within_limits ? "true" : "false");
}

static void warn_duplicates(const prediction_file *f) {
    for (int i = 0; i < f->count; i++) {
        const prediction *r = &f->records[i];
        if (r->first == i) continue;
        print_errorf("warning: %s:%ld: path '%s' repeats line %ld; the first record is compared", f->name, r->line,
                     r->path, f->records[r->first].line);
    }
}

/* Says why a limit is broken on `why` (when not NULL); returns false. */
__attribute__((format(printf, 2, 3))) static bool limit_broken(FILE *why, const char *fmt, ...) {
    if (why) {
        va_list args;
        va_start(args, fmt);
        fputs("emote: ", why);
        vfprintf(why, fmt, args);
        fputc('\n', why);
        va_end(args);
    }
    return false;
}

/* True when the comparison is within its limits; otherwise says why on `why` (NULL: silent). */
static bool check_limits(const diff_report *r, FILE *why) {
    const diff_result *d = r->result;
    bool ok = true;
    if (d->changed.count > r->max_changed)
        ok = limit_broken(why, "%d top label%s changed, more than --max-changed %d", d->changed.count,
                          d->changed.count == 1 ? "" : "s", r->max_changed);
    if (r->tolerance >= 0 && d->max_change > r->tolerance)
        ok = limit_broken(why, "a probability changed by %.6g, more than --tolerance %g", d->max_change,
                          r->tolerance);
    if (d->only_old.count || d->only_new.count)
        ok = limit_broken(why, "the files hold different paths: %d only in %s, %d only in %s", d->only_old.count,
                          r->old->name, d->only_new.count, r->new->name);
    if (d->failed_old_only.count || d->failed_new_only.count)
        ok = limit_broken(why, "inputs failed in one file only: %d in %s, %d in %s", d->failed_old_only.count,
                          r->old->name, d->failed_new_only.count, r->new->name);
    return ok;
}

/* ---- command line -------------------------------------------------------------------------- */

typedef struct {
    const char *paths[2];
    int num_paths;
    output_format format;
    int max_changed;
    double tolerance;
} diff_options;

enum { OPT_MAX_CHANGED = OPTION_LONG_ONLY, OPT_TOLERANCE };

static const struct option option_table[] = {
    {"format", required_argument, NULL, 'f'}, {"max-changed", required_argument, NULL, OPT_MAX_CHANGED},
    {"tolerance", required_argument, NULL, OPT_TOLERANCE}, HELP_OPTION, {0}};

static int cmd_diff(int argc, char **argv);
const command diff_command = {"diff", cmd_diff, option_table};

/* Returns -1 to go on, else the exit status (help or a usage error). */
static int parse_options(int argc, char **argv, diff_options *o) {
    option_parser p;
    options_start(&p, &diff_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        bool ok = true;
        switch (code) {
        case OPTIONS_OPERAND:
            if (o->num_paths == 2) {
                fprintf(stderr, "emote: diff takes two files (extra '%s')\n", p.value);
                return EXIT_USAGE;
            }
            o->paths[o->num_paths++] = p.value;
            break;
        case 'h': fputs(usage, stdout); return EXIT_ALL_OK;
        case 'f':
            if (!parse_report_format(&p, &o->format)) return EXIT_USAGE;
            break;
        case OPT_MAX_CHANGED: ok = parse_int_option(p.name, p.value, 0, INT_MAX, &o->max_changed); break;
        case OPT_TOLERANCE: ok = parse_double_option(p.name, p.value, 0, 1, &o->tolerance); break;
        default: ok = false; /* OPTIONS_ERROR: reported */
        }
        if (!ok) return EXIT_USAGE;
    }
    if (o->num_paths != 2) {
        fprintf(stderr, "emote: diff needs two prediction files, OLD and NEW (see emote diff --help)\n");
        return EXIT_USAGE;
    }
    if (!strcmp(o->paths[0], "-") && !strcmp(o->paths[1], "-")) {
        fprintf(stderr, "emote: only one of OLD and NEW can be '-' (stdin)\n");
        return EXIT_USAGE;
    }
    return -1;
}

static int cmd_diff(int argc, char **argv) {
    diff_options o = {{NULL, NULL}, 0, FORMAT_TABLE, 0, -1};
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;
    label_set labels = {0};
    prediction_file old = {0}, new = {0};
    diff_result result = {0};
    status = EXIT_FATAL;
    emote_error err;
    if (predictions_load(&old, o.paths[0], &labels, &err) || predictions_load(&new, o.paths[1], &labels, &err)) {
        print_error(err.message);
    } else if (diff_files(&old, &new, labels.count, &result)) {
        diff_report report = {&old, &new, &labels, &result, o.max_changed, o.tolerance};
        warn_duplicates(&old);
        warn_duplicates(&new);
        bool within = check_limits(&report, NULL);
        if (o.format == FORMAT_JSON) print_json(&report, within);
        else print_text(&report);
        check_limits(&report, stderr);
        status = within ? EXIT_ALL_OK : EXIT_CHECK_FAILED; /* main checks that stdout took the report */
    }
    diff_result_free(&result);
    prediction_file_free(&old);
    prediction_file_free(&new);
    label_set_free(&labels);
    return status;
}
