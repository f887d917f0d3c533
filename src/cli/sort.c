/* emote sort PATH... --into DIR: files every image under DIR/<label>/ by copy, hard link,
 * symlink or move.
 *
 * Invariants: nothing is ever overwritten (a taken name becomes NAME~2.ext, ~3, ...); a
 * name holding the same image already counts as "already sorted", so a re-run changes
 * nothing; a file appears under its final name complete or not at all (hidden temp file,
 * fsync, then a link/rename that fails instead of replacing); --move removes an original
 * only once its destination is complete. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "progress.h"
#include "sort_manifest.h"
#include "sort_undo.h"
#include "string_table.h"
#include "util.h"

static const char usage[] =
    "usage: emote sort [options] PATH... --into DIR\n"
    "\n"
    "Classifies images and files each one under DIR/<label>/. PATH is an image file, a\n"
    "directory (walked recursively) or '-' to read paths from stdin. Images already inside\n"
    "DIR are skipped, so DIR may lie inside an input directory. With --faces, each image is\n"
    "filed by its main face (see --faces); images with no face go to DIR/_noface/ (with --require-face\n"
    "they fail instead and stay where they are).\n"
    "\n"
    "      --into DIR          destination folder, created when missing (required)\n"
    "      --copy              copy the images (default)\n"
    "      --link              hard-link them (DIR on the same filesystem)\n"
    "      --symlink           symlink them (each link holds the source's absolute path)\n"
    "      --move              move them; an original goes only once its copy is complete\n"
    "      --min-confidence P  images whose top probability is below P (0..1, default 0)\n"
    "                          go to DIR/_uncertain/\n"
    "      --dry-run           print '<source><TAB><destination>' per image; write nothing\n"
    "      --manifest FILE     record what went where: CSV, or JSON lines if FILE ends in .jsonl\n"
    "      --force             replace an existing manifest FILE\n"
    "      --undo MANIFEST     undo the sort that wrote MANIFEST (finished or killed): move files\n"
    "                          back, never over a file; remove copies and links it made\n"
    "%s"
    "  -h, --help              this help\n"
    "\n"
    "Names: an image keeps its file name. If DIR/<label>/NAME holds something else, it is\n"
    "stored as STEM~2.EXT, STEM~3.EXT, ...: nothing is ever overwritten. A name that already\n"
    "holds the same image (same bytes; for --link the same inode; for --symlink a link to the\n"
    "same path) counts as already sorted, so running a sort again changes nothing; --move\n"
    "then removes the original. Copies are written to a hidden temporary file, synced and\n"
    "linked into place, so an interrupted run leaves no partial image; later runs remove\n"
    "such .*.emote-tmp.* files once they are 15 minutes old. Files that fail to decode stay\n"
    "where they are.\n"
    "\n"
    "The manifest must lie outside DIR. Each row is written (synced every second) just before\n"
    "its file is placed, so after a kill every placed file has its row; a later row for the\n"
    "same source supersedes it. To finish a killed sort run it again with another manifest;\n"
    "to undo it, emote sort --undo MANIFEST.\n"
    "\n"
    "Manifest columns: source, destination, label (the top label, also for _uncertain; empty\n"
    "for _noface), confidence, action (copied, linked, symlinked, moved, already-sorted or\n"
    "failed; failed rows have empty destination, label and confidence). JSON lines carry the\n"
    "same keys, null where CSV is empty, plus \"error\" on failed rows.\n"
    "\n"
    "Exit status: 0 every image sorted or already sorted; 1 some inputs failed (each is listed\n"
    "on stderr, the rest are sorted; for --undo, some files could not be put back); 2 usage\n"
    "error, the manifest exists and --force is not given, or it lies inside DIR; 3 fatal\n"
    "(model unusable, DIR or the manifest cannot be written, no inputs; a --undo manifest\n"
    "that cannot be read or is malformed).\n"
    "\n"
    "Examples:\n"
    "  emote sort photos/ --into sorted/\n"
    "  emote sort --move --min-confidence 0.6 inbox/ --into labelled/\n"
    "  find crops -name '*.png' -print0 | emote sort -0 --symlink - --into by-label/\n"
    "  emote sort --dry-run photos/ --into sorted/ | less\n"
    "  emote sort --manifest sorted.csv photos/ --into sorted/\n"
    "  emote sort --faces --move camera/ --into by-expression/\n"
    "  emote sort --undo sorted.csv\n";

#define STALE_TEMP_SECONDS (15 * 60)
#define MAX_SUFFIX 100000
#define ERROR_SIZE (2 * PATH_MAX + 256)

/* The folders after the labels' (index classes + EXTRA_...). */
enum { EXTRA_UNCERTAIN, EXTRA_NOFACE, NUM_EXTRA_FOLDERS };
static const char *const extra_folders[NUM_EXTRA_FOLDERS] = {"_uncertain", "_noface"};

typedef enum { MODE_COPY, MODE_LINK, MODE_SYMLINK, MODE_MOVE } sort_mode;
static const char *const mode_flags[] = {"--copy", "--link", "--symlink", "--move"};
static const char *const mode_actions[] = {"copied", "linked", "symlinked", "moved"};

typedef struct {
    engine_options engine;
    const char *into, *manifest_path, *undo_path;
    sort_mode mode;
    bool mode_given, dry_run, force;
    double min_confidence;
} sort_options;

/* ---- small helpers ------------------------------------------------------------ */

static bool failf(char *error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool failf(char *error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, ERROR_SIZE, fmt, ap);
    va_end(ap);
    return false;
}

/* The path of the directory entry itself (its folder resolved, the entry not followed). */
static char *absolute_entry_path(const char *path) {
    char *dir = path_folder(path);
    char *real = dir ? realpath(dir, NULL) : NULL;
    char *absolute = real ? join_path(real, path_base_name(path)) : NULL;
    free(dir);
    free(real);
    return absolute;
}

static bool path_within(const char *path, const char *root) {
    size_t n = strlen(root);
    if (n == 1) return true; /* root is "/" */
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool same_inode(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* mkdir -p. */
static bool make_directories(const char *path, char *error) {
    char *p = str_dup(path);
    if (!p) return failf(error, "out of memory");
    bool ok = true;
    for (char *c = p + 1; ok; c++) {
        if (*c != '/' && *c != '\0') continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) ok = failf(error, "cannot create folder %s: %s", p, strerror(errno));
        *c = saved;
        if (!saved) break;
    }
    struct stat st;
    if (ok && stat(p, &st) != 0) ok = failf(error, "cannot create folder %s: %s", p, strerror(errno));
    else if (ok && !S_ISDIR(st.st_mode)) ok = failf(error, "%s exists and is not a folder", p);
    free(p);
    return ok;
}

static bool symlink_points_to(const char *path, const char *target) {
    size_t len = strlen(target);
    char *buffer = malloc(len + 2);
    ssize_t n = buffer ? readlink(path, buffer, len + 2) : -1;
    bool same = n == (ssize_t)len && memcmp(buffer, target, len) == 0;
    free(buffer);
    return same;
}

/* ---- the sources ---------------------------------------------------------------- */

typedef struct {
    const char *path; /* as the input gave it */
    char *absolute;   /* --symlink's target and the dry-run plan's record; else NULL */
    struct stat st;   /* stat(): a symlinked source is its target */
} source_file;

/* A complete, synced copy of src (its permissions and modification time too) in a hidden
 * temporary file in folder, ready to publish. */
static bool copy_to_temp(const source_file *src, const char *folder, mode_t umask_bits, atomic_file *temp,
                         char *error) {
    struct stat st;
    emote_error err;
    int in = open_regular_file(src->path, &st, &err); /* never blocks on a FIFO put in its place */
    if (in < 0) return failf(error, "%s", err.message);
    bool ok = !atomic_file_begin(temp, folder, path_base_name(src->path), &err) &&
              !atomic_file_copy_from(temp, in, src->path, &src->st, umask_bits, &err) && !atomic_file_finish(temp, &err);
    close(in);
    if (!ok) {
        atomic_file_discard(temp);
        failf(error, "%s", err.message);
    }
    return ok;
}

/* ---- dry-run plan: destinations claimed earlier in this run ---------------------- */

typedef struct {
    char **destinations, **sources; /* owned; claim i: destinations[i] <- sources[i] */
    size_t count, capacity;
    string_table index;             /* destination -> claim */
} plan_map;

/* The source that claimed dest earlier in this run, or NULL. */
static const char *plan_find(const plan_map *m, const char *dest) {
    int i = table_find(&m->index, dest);
    return i < 0 ? NULL : m->sources[i];
}

static bool plan_add(plan_map *m, const char *dest, const char *source) {
    if (m->count == m->capacity) {
        size_t capacity = m->capacity ? m->capacity * 2 : 256;
        char **d = realloc(m->destinations, capacity * sizeof *d);
        if (d) m->destinations = d;
        char **s = d ? realloc(m->sources, capacity * sizeof *s) : NULL;
        if (s) m->sources = s;
        if (!d || !s || capacity > INT_MAX) return false;
        m->capacity = capacity;
    }
    char *d = str_dup(dest), *s = str_dup(source);
    if (!d || !s || table_add(&m->index, d, (int)m->count) < 0) {
        free(d);
        free(s);
        return false;
    }
    m->destinations[m->count] = d;
    m->sources[m->count++] = s;
    return true;
}

static void plan_free(plan_map *m) {
    for (size_t i = 0; i < m->count; i++) {
        free(m->destinations[i]);
        free(m->sources[i]);
    }
    free(m->destinations);
    free(m->sources);
    table_free(&m->index);
}

/* ---- manifest ------------------------------------------------------------------- */

typedef struct {
    const char *source, *destination, *label, *action, *error; /* NULL where not known */
    double confidence;
} sort_record;

/* Rows go out as they happen (append_file: each row written at once, synced every second),
 * so a killed sort leaves a row for every file it placed. */
typedef struct {
    append_file file;
    bool jsonl, open;
} manifest;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool manifest_open(manifest *m, const char *path, bool replace, char *error) {
    m->jsonl = ends_with(path, ".jsonl");
    emote_error err;
    if (append_file_create(&m->file, path, replace, m->jsonl ? "" : SORT_MANIFEST_CSV_HEADER, &err))
        return failf(error, "%s", err.message);
    m->open = true;
    return true;
}

static void json_write_path_or_null(FILE *f, const char *key, const char *path) {
    if (path) json_write_path(f, key, path);
    else fprintf(f, "\"%s\":null", key);
}

static void write_jsonl_row(FILE *f, const sort_record *r) {
    fputc('{', f);
    json_write_path(f, "source", r->source);
    fputc(',', f);
    json_write_path_or_null(f, "destination", r->destination);
    fputs(",\"label\":", f);
    if (r->label) json_write_string(f, r->label);
    else fputs("null", f);
    if (r->label) fprintf(f, ",\"confidence\":%.9g", r->confidence);
    else fputs(",\"confidence\":null", f);
    fprintf(f, ",\"action\":\"%s\"", r->action);
    if (r->error) {
        fputs(",\"error\":", f);
        json_write_string(f, r->error);
    }
    fputs("}\n", f);
}

static void write_csv_row(FILE *f, const sort_record *r) {
    csv_write_field(f, r->source);
    fputc(',', f);
    csv_write_field(f, r->destination ? r->destination : "");
    fputc(',', f);
    csv_write_field(f, r->label ? r->label : "");
    fputc(',', f);
    if (r->label) fprintf(f, "%.9g", r->confidence);
    fprintf(f, ",%s\n", r->action);
}

/* Appends the row (one write); false with error when it cannot be written. */
static bool manifest_add(manifest *m, const sort_record *r, char *error) {
    if (!m->open) return true;
    char *row = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&row, &size);
    if (!f) return failf(error, "out of memory");
    if (m->jsonl) write_jsonl_row(f, r);
    else write_csv_row(f, r);
    bool ok = fclose(f) == 0;
    emote_error err;
    if (!ok) failf(error, "out of memory");
    else if (append_file_write(&m->file, row, size, &err)) ok = failf(error, "%s", err.message);
    free(row);
    return ok;
}

static bool manifest_close(manifest *m, char *error) {
    if (!m->open) return true;
    m->open = false;
    emote_error err;
    return append_file_close(&m->file, &err) ? failf(error, "%s", err.message) : true;
}

/* ---- the sorter ------------------------------------------------------------------- */

typedef struct {
    char *path;
    bool ready; /* created and cleared of stale temp files */
} label_folder;

typedef struct {
    const sort_options *opt;
    const emote_model *model;
    int classes, num_folders;
    label_folder *folders; /* one per label, then the extra folders */
    long *filed;           /* images newly filed, per folder */
    long already, failed, skipped, stale_removed;
    char *real_into;  /* NULL while DIR does not exist (dry run) */
    char *cached_dir; /* the last input folder checked against real_into */
    bool cached_inside;
    mode_t umask_bits;
    plan_map plan;
    manifest manifest;
    bool manifest_broken; /* a row could not be written: the run stops */
    progress_bar progress;
    char error[ERROR_SIZE], manifest_error[ERROR_SIZE];
} sorter;

static const char *folder_name(const sorter *s, int k) {
    return k < s->classes ? emote_model_label(s->model, k) : extra_folders[k - s->classes];
}

/* Labels come from the model file: each must be a plain, distinct folder name. */
static bool labels_are_folder_names(const emote_model *model) {
    for (int k = 0; k < emote_model_num_classes(model); k++) {
        const char *label = emote_model_label(model, k);
        bool ok = *label && strcmp(label, ".") && strcmp(label, "..") && !strchr(label, '/');
        for (int x = 0; ok && x < NUM_EXTRA_FOLDERS; x++) ok = strcmp(label, extra_folders[x]) != 0;
        if (!ok) {
            fprintf(stderr, "emote: the model's label '%s' cannot be used as a folder name\n", label);
            return false;
        }
    }
    return true;
}

static bool ensure_folder(sorter *s, label_folder *f) {
    if (f->ready) return true;
    if (!make_directories(f->path, s->error)) return false;
    s->stale_removed += atomic_remove_stale_temps(f->path, STALE_TEMP_SECONDS, s->opt->engine.quiet);
    f->ready = true;
    return true;
}

/* True for inputs inside DIR (compared by real path), which are never sorted again. */
static bool lies_inside_into(sorter *s, const char *path) {
    if (!s->real_into) return false;
    char *dir = path_folder(path);
    if (!dir) return false;
    if (s->cached_dir && strcmp(dir, s->cached_dir) == 0) {
        free(dir);
        return s->cached_inside;
    }
    free(s->cached_dir);
    s->cached_dir = dir;
    char *real = realpath(dir, NULL);
    s->cached_inside = real && path_within(real, s->real_into);
    free(real);
    return s->cached_inside;
}

static bool open_source(sorter *s, const char *path, source_file *src) {
    src->path = path;
    src->absolute = NULL;
    if (stat(path, &src->st) != 0) return failf(s->error, "cannot read %s: %s", path, strerror(errno));
    if (s->opt->mode != MODE_SYMLINK && !S_ISREG(src->st.st_mode)) return failf(s->error, "%s is not a regular file", path);
    if ((s->opt->mode == MODE_SYMLINK || s->opt->dry_run) && !(src->absolute = absolute_entry_path(path)))
        return failf(s->error, "cannot resolve %s: %s", path, strerror(errno));
    return true;
}

/* DIR/<label>/NAME for n == 1, else DIR/<label>/STEM~n.EXT. */
static char *candidate_path(const char *folder, const char *name, int n) {
    if (n == 1) return join_path(folder, name);
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) dot = name + strlen(name);
    char *path;
    return asprintf(&path, "%s/%.*s~%d%s", folder, (int)(dot - name), name, n, dot) < 0 ? NULL : path;
}

/* Whether the entry at path (with its stat) already is src, as the mode files it. */
static bool holds_same_image(sort_mode mode, const source_file *src, const char *path, const struct stat *st) {
    switch (mode) {
    case MODE_LINK: return same_inode(st, &src->st);
    case MODE_SYMLINK: return S_ISLNK(st->st_mode) && symlink_points_to(path, src->absolute);
    default:
        return S_ISREG(st->st_mode) && st->st_size == src->st.st_size &&
               (same_inode(st, &src->st) || files_hold_same_bytes(src->path, path));
    }
}

typedef enum { NAME_FREE, NAME_SAME, NAME_TAKEN, NAME_ERROR } name_state;

static name_state examine_name(sorter *s, const source_file *src, const char *dest) {
    sort_mode mode = s->opt->mode;
    const char *planned = s->opt->dry_run ? plan_find(&s->plan, dest) : NULL;
    struct stat st;
    if (planned) { /* claimed earlier in this dry run by the source `planned` */
        if (mode == MODE_SYMLINK) return strcmp(planned, src->absolute) == 0 ? NAME_SAME : NAME_TAKEN;
        return stat(planned, &st) == 0 && holds_same_image(mode, src, planned, &st) ? NAME_SAME : NAME_TAKEN;
    }
    if (lstat(dest, &st) == 0) return holds_same_image(mode, src, dest, &st) ? NAME_SAME : NAME_TAKEN;
    if (errno == ENOENT) return NAME_FREE;
    failf(s->error, "cannot inspect %s: %s", dest, strerror(errno));
    return NAME_ERROR;
}

typedef enum { OUTCOME_PENDING, OUTCOME_FILED, OUTCOME_ALREADY, OUTCOME_FAILED } outcome;

/* Copies src to dest through a temporary file kept in *temp across name clashes. */
static outcome place_copy(sorter *s, const source_file *src, const char *folder, const char *dest, atomic_file *temp) {
    if (!temp->temp_path && !copy_to_temp(src, folder, s->umask_bits, temp, s->error)) return OUTCOME_FAILED;
    emote_error err;
    switch (atomic_file_publish(temp, dest, false, &err)) {
    case ATOMIC_PUBLISHED: return OUTCOME_FILED;
    case ATOMIC_NAME_TAKEN: return OUTCOME_PENDING;
    default: failf(s->error, "%s", err.message); return OUTCOME_FAILED;
    }
}

/* Renames src to dest; across filesystems copies, syncs, then removes the original. */
static outcome place_move(sorter *s, const source_file *src, const char *folder, const char *dest, atomic_file *temp) {
    emote_error err;
    if (!temp->temp_path) {
        int err_no = 0;
        atomic_publish_status st = rename_no_clobber(src->path, dest, &err_no, &err);
        if (st == ATOMIC_PUBLISHED) return OUTCOME_FILED;
        if (st == ATOMIC_NAME_TAKEN) return OUTCOME_PENDING;
        if (err_no != EXDEV) {
            failf(s->error, "%s", err.message);
            return OUTCOME_FAILED;
        }
    }
    outcome o = place_copy(s, src, folder, dest, temp);
    if (o != OUTCOME_FILED) return o;
    if (sync_folder(folder, &err)) {
        failf(s->error, "%s", err.message);
        return OUTCOME_FAILED;
    }
    if (unlink(src->path) != 0) {
        failf(s->error, "copied to %s but cannot remove the original: %s", dest, strerror(errno));
        return OUTCOME_FAILED;
    }
    return OUTCOME_FILED;
}

/* Creates dest for src by the mode, never replacing a name: OUTCOME_PENDING when dest
 * appeared meanwhile (the caller looks at it again). */
static outcome place_image(sorter *s, const source_file *src, const char *folder, const char *dest, atomic_file *temp) {
    int rc;
    switch (s->opt->mode) {
    case MODE_COPY: return place_copy(s, src, folder, dest, temp);
    case MODE_MOVE: return place_move(s, src, folder, dest, temp);
    case MODE_LINK: rc = linkat(AT_FDCWD, src->path, AT_FDCWD, dest, AT_SYMLINK_FOLLOW); break;
    default: rc = symlink(src->absolute, dest); break;
    }
    if (rc == 0) return OUTCOME_FILED;
    if (errno == EEXIST) return OUTCOME_PENDING;
    failf(s->error, "cannot create %s: %s", dest, strerror(errno));
    return OUTCOME_FAILED;
}

/* The image is in place already; --move then removes the original (never the same file). */
static outcome settle_already_sorted(sorter *s, const source_file *src, const char *dest) {
    if (s->opt->mode != MODE_MOVE || s->opt->dry_run) return OUTCOME_ALREADY;
    struct stat st;
    if (stat(dest, &st) == 0 && same_inode(&st, &src->st)) return OUTCOME_ALREADY;
    if (unlink(src->path) != 0) {
        failf(s->error, "already sorted as %s but the original cannot be removed: %s", dest, strerror(errno));
        return OUTCOME_FAILED;
    }
    return OUTCOME_ALREADY;
}

static outcome claim_name(sorter *s, const source_file *src, const label_folder *folder, const char *dest,
                          atomic_file *temp) {
    if (!s->opt->dry_run) return place_image(s, src, folder->path, dest, temp);
    if (!plan_add(&s->plan, dest, src->absolute)) {
        failf(s->error, "out of memory");
        return OUTCOME_FAILED;
    }
    return OUTCOME_FILED;
}

/* Writes the manifest row of what is about to happen; a failed write stops the run. */
static bool announce(sorter *s, sort_record *row, const char *dest, const char *action) {
    row->destination = dest;
    row->action = action;
    if (manifest_add(&s->manifest, row, s->manifest_error)) return true;
    s->manifest_broken = true;
    return failf(s->error, "not filed: the manifest cannot be written");
}

/* Files the image at row->source under folder k, the manifest row written just before each
 * change; row->destination gets its destination when filed or already there. */
static outcome file_image(sorter *s, sort_record *row, int k) {
    label_folder *folder = &s->folders[k];
    const char *path = row->source;
    source_file src = {.path = path};
    if ((!s->opt->dry_run && !ensure_folder(s, folder)) || !open_source(s, path, &src)) {
        free(src.absolute);
        return OUTCOME_FAILED;
    }
    char *dest = NULL;
    atomic_file temp = {0};
    outcome result = OUTCOME_PENDING;
    for (int n = 1, steps = 0; result == OUTCOME_PENDING; steps++) {
        free(dest);
        if (n > MAX_SUFFIX || steps > 2 * MAX_SUFFIX) {
            dest = NULL;
            failf(s->error, "too many names taken in %s", folder->path);
            result = OUTCOME_FAILED;
        } else if (!(dest = candidate_path(folder->path, path_base_name(path), n))) {
            failf(s->error, "out of memory");
            result = OUTCOME_FAILED;
        } else {
            switch (examine_name(s, &src, dest)) {
            case NAME_TAKEN: n++; break;
            case NAME_SAME:
                result = announce(s, row, dest, "already-sorted") ? settle_already_sorted(s, &src, dest) : OUTCOME_FAILED;
                break;
            case NAME_FREE:
                result = announce(s, row, dest, mode_actions[s->opt->mode]) ? claim_name(s, &src, folder, dest, &temp)
                                                                             : OUTCOME_FAILED;
                break;
            default: result = OUTCOME_FAILED; break;
            }
        }
    }
    atomic_file_discard(&temp);
    free(src.absolute);
    row->destination = result == OUTCOME_FAILED ? NULL : dest;
    if (result == OUTCOME_FAILED) free(dest);
    return result;
}

static void record_failure(sorter *s, const char *path, const char *message) {
    progress_clear(&s->progress);
    print_input_error(path, message);
    s->failed++;
    sort_record r = {path, NULL, NULL, "failed", message, 0};
    if (!s->manifest_broken && !manifest_add(&s->manifest, &r, s->manifest_error)) s->manifest_broken = true;
}

/* Files the image at path under folder k; its manifest row gets label (NULL: none) and confidence. */
static void sort_into(sorter *s, const char *path, int k, const char *label, double confidence) {
    sort_record row = {path, NULL, label, NULL, NULL, confidence};
    outcome o = file_image(s, &row, k);
    char *dest = (char *)row.destination;
    if (o == OUTCOME_FAILED) {
        record_failure(s, path, s->error);
        return;
    }
    if (o == OUTCOME_FILED) s->filed[k]++;
    else s->already++;
    if (s->opt->dry_run) {
        progress_before_stdout(&s->progress);
        printf("%s\t%s\n", path, o == OUTCOME_FILED ? dest : "(already sorted)");
    }
    free(dest);
}

static void sort_classified(sorter *s, const result *res) {
    int top = top_label(res->probs, s->classes);
    double confidence = res->probs[top];
    int k = confidence < s->opt->min_confidence ? s->classes + EXTRA_UNCERTAIN : top;
    sort_into(s, res->path, k, emote_model_label(s->model, top), confidence);
}

static bool sort_result(void *user, const result *r) {
    sorter *s = user;
    if (lies_inside_into(s, r->path)) s->skipped++;
    else if (r->no_face && !s->opt->engine.faces.require) sort_into(s, r->path, s->classes + EXTRA_NOFACE, NULL, 0);
    else if (r->error) record_failure(s, r->path, r->error);
    else sort_classified(s, r);
    progress_tick(&s->progress);
    return !(s->opt->dry_run && ferror(stdout)) && !s->manifest_broken;
}

static void print_summary(const sorter *s) {
    const char *images = s->failed == 1 ? "image" : "images";
    if (s->opt->engine.quiet) {
        if (s->failed) fprintf(stderr, "emote: %ld %s failed\n", s->failed, images);
        return;
    }
    long total = 0;
    for (int k = 0; k < s->num_folders; k++) total += s->filed[k];
    fprintf(stderr, "%s %ld image%s into %s", s->opt->dry_run ? "would sort" : "sorted", total, total == 1 ? "" : "s",
            s->opt->into);
    const char *sep = ": ";
    for (int k = 0; k < s->num_folders; k++) {
        if (!s->filed[k]) continue;
        fprintf(stderr, "%s%s %ld", sep, folder_name(s, k), s->filed[k]);
        sep = ", ";
    }
    if (s->already) fprintf(stderr, "; %ld already sorted", s->already);
    if (s->skipped) fprintf(stderr, "; %ld inside %s skipped", s->skipped, s->opt->into);
    if (s->failed) fprintf(stderr, "; %ld failed", s->failed);
    if (s->stale_removed) fprintf(stderr, "; %ld stale temporary files removed", s->stale_removed);
    fputc('\n', stderr);
}

static void sorter_free(sorter *s) {
    for (int k = 0; s->folders && k < s->num_folders; k++) free(s->folders[k].path);
    free(s->folders);
    free(s->filed);
    free(s->real_into);
    free(s->cached_dir);
    plan_free(&s->plan);
    manifest_close(&s->manifest, s->manifest_error);
}

/* Prepares DIR (created unless dry run), the label folders and the manifest. */
static bool sorter_init(sorter *s, const sort_options *o, const emote_model *model) {
    memset(s, 0, sizeof *s);
    s->opt = o;
    s->model = model;
    s->classes = emote_model_num_classes(model);
    s->num_folders = s->classes + NUM_EXTRA_FOLDERS;
    s->umask_bits = umask(0);
    umask(s->umask_bits);
    s->folders = calloc_array((size_t)s->num_folders, sizeof *s->folders);
    s->filed = calloc_array((size_t)s->num_folders, sizeof *s->filed);
    bool ok = s->folders && s->filed;
    for (int k = 0; ok && k < s->num_folders; k++) ok = (s->folders[k].path = join_path(o->into, folder_name(s, k))) != NULL;
    if (!ok) failf(s->error, "out of memory");
    if (ok && !o->dry_run) ok = make_directories(o->into, s->error);
    if (ok && !(s->real_into = realpath(o->into, NULL)) && !(o->dry_run && errno == ENOENT))
        ok = failf(s->error, "cannot resolve %s: %s", o->into, strerror(errno));
    if (ok && o->manifest_path) ok = manifest_open(&s->manifest, o->manifest_path, o->force, s->error);
    if (!ok) fprintf(stderr, "emote: %s\n", s->error);
    return ok;
}

static int run_sort(const sort_options *o, char **paths, int num_paths) {
    engine e;
    if (!engine_open(&e, &o->engine)) return EXIT_FATAL;
    if (!labels_are_folder_names(e.model)) {
        engine_close(&e);
        return EXIT_FATAL;
    }
    sorter s;
    int status = EXIT_FATAL;
    if (sorter_init(&s, o, e.model)) {
        progress_start(&s.progress, &o->engine, paths, num_paths);
        input_source *src = input_source_new(paths, num_paths, &o->engine);
        run_counts counts = src ? classify_inputs(&e, src, sort_result, &s) : (run_counts){0, 0};
        input_source_free(src);
        progress_finish(&s.progress);
        if (o->dry_run && (fflush(stdout) != 0 || ferror(stdout))) {
            /* the plan did not reach stdout: main says so */
        } else if (counts.done == 0) {
            fprintf(stderr, "emote: no images found in the inputs given\n");
        } else if (s.manifest_broken || !manifest_close(&s.manifest, s.manifest_error)) {
            fprintf(stderr, "emote: %s; stopped (every file placed so far has its row)\n", s.manifest_error);
        } else {
            print_summary(&s);
            status = s.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
        }
    }
    sorter_free(&s);
    engine_close(&e);
    return status;
}

/* ---- command line --------------------------------------------------------------- */

static bool set_mode(sort_options *o, sort_mode mode) {
    if (o->mode_given && o->mode != mode) {
        fprintf(stderr, "emote: %s and %s cannot be combined\n", mode_flags[o->mode], mode_flags[mode]);
        return false;
    }
    o->mode = mode;
    o->mode_given = true;
    return true;
}

static bool require_value(const option_parser *p, const char *what) {
    if (*p->value) return true;
    fprintf(stderr, "emote: %s needs %s\n", p->name, what);
    return false;
}

/* The mode flags' codes are OPT_COPY + their sort_mode. */
enum { OPT_INTO = OPTION_COMMAND, OPT_MANIFEST, OPT_MIN_CONFIDENCE, OPT_DRY_RUN, OPT_FORCE, OPT_UNDO, OPT_COPY };

static const struct option option_table[] = {
    {"into", required_argument, NULL, OPT_INTO}, {"copy", no_argument, NULL, OPT_COPY + MODE_COPY},
    {"link", no_argument, NULL, OPT_COPY + MODE_LINK}, {"symlink", no_argument, NULL, OPT_COPY + MODE_SYMLINK},
    {"move", no_argument, NULL, OPT_COPY + MODE_MOVE}, {"min-confidence", required_argument, NULL, OPT_MIN_CONFIDENCE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN}, {"manifest", required_argument, NULL, OPT_MANIFEST},
    {"force", no_argument, NULL, OPT_FORCE}, {"undo", required_argument, NULL, OPT_UNDO}, ENGINE_OPTIONS, HELP_OPTION, {0}};

static int cmd_sort(int argc, char **argv);
const command sort_command = {"sort", cmd_sort, option_table};

/* Returns -1 to go on, else the exit status. */
static int parse_arguments(int argc, char **argv, sort_options *o, char **paths, int *num_paths) {
    option_parser p;
    options_start(&p, &sort_command, argc, argv);
    for (int code; (code = options_next(&p)) != OPTIONS_END;) {
        bool ok = true;
        switch (code) {
        case OPTIONS_OPERAND: paths[(*num_paths)++] = p.value; break;
        case 'h': printf(usage, ENGINE_OPTIONS_HELP); return EXIT_ALL_OK;
        case OPT_INTO: ok = require_value(&p, "a folder"); o->into = p.value; break;
        case OPT_MANIFEST: ok = require_value(&p, "a file name"); o->manifest_path = p.value; break;
        case OPT_MIN_CONFIDENCE: ok = parse_double_option(p.name, p.value, 0, 1, &o->min_confidence); break;
        case OPT_DRY_RUN: o->dry_run = true; break;
        case OPT_FORCE: o->force = true; break;
        case OPT_UNDO: ok = require_value(&p, "a manifest"); o->undo_path = p.value; break;
        case OPT_COPY + MODE_COPY:
        case OPT_COPY + MODE_LINK:
        case OPT_COPY + MODE_SYMLINK:
        case OPT_COPY + MODE_MOVE: ok = set_mode(o, (sort_mode)(code - OPT_COPY)); break;
        default: ok = engine_option(&o->engine, &p, code);
        }
        if (!ok) return EXIT_USAGE;
    }
    return -1;
}

/* path made absolute and its ".", ".." and empty components resolved by their names alone
 * (for folders that do not exist yet); malloc'd. */
static char *lexical_absolute_path(const char *path) {
    char *cwd = path[0] == '/' ? str_dup("") : getcwd(NULL, 0), *joined = NULL;
    if (!cwd || asprintf(&joined, "%s/%s", cwd, path) < 0) joined = NULL;
    free(cwd);
    if (!joined) return NULL;
    char *out = joined, *w = joined; /* rewritten in place: the result is never longer */
    for (char *c = joined; *c;) {
        char *end = c + strcspn(c, "/");
        size_t len = (size_t)(end - c);
        if (len == 2 && c[0] == '.' && c[1] == '.') {
            while (w > out && *--w != '/') {}
        } else if (len && !(len == 1 && c[0] == '.')) {
            *w++ = '/';
            memmove(w, c, len);
            w += len;
        }
        c = *end ? end + 1 : end;
    }
    if (w == out) *w++ = '/';
    *w = '\0';
    return out;
}

/* True when the manifest would lie inside DIR or be DIR: compared by real paths, and by
 * names alone for what does not exist yet. */
static bool manifest_inside_into(const char *manifest_path, const char *into) {
    char *real_into = realpath(into, NULL), *real = realpath(manifest_path, NULL);
    char *entry = absolute_entry_path(manifest_path);
    char *named_into = lexical_absolute_path(into), *named = lexical_absolute_path(manifest_path);
    bool inside = (real_into && ((entry && path_within(entry, real_into)) || (real && path_within(real, real_into)))) ||
                  (named_into && named && path_within(named, named_into));
    free(real_into);
    free(real);
    free(entry);
    free(named_into);
    free(named);
    return inside;
}

static bool check_undo_arguments(const sort_options *o, int num_paths) {
    if (num_paths || o->into || o->manifest_path || o->dry_run || o->mode_given)
        fprintf(stderr, "emote: --undo MANIFEST takes no paths, --into, --manifest, --dry-run or mode\n");
    else return true;
    return false;
}

static bool check_arguments(const sort_options *o, int num_paths) {
    struct stat st;
    if (o->undo_path) return check_undo_arguments(o, num_paths);
    if (!o->into) fprintf(stderr, "emote: sort needs --into DIR (see emote sort --help)\n");
    else if (num_paths == 0) fprintf(stderr, "emote: no inputs (give files, directories or '-'; see emote sort --help)\n");
    else if (o->engine.stdin_image) fprintf(stderr, "emote: sort files images by name: --stdin-image has none\n");
    else if (o->dry_run && o->manifest_path) fprintf(stderr, "emote: --dry-run writes nothing; drop --manifest\n");
    else if (o->manifest_path && !o->force && lstat(o->manifest_path, &st) == 0)
        fprintf(stderr, "emote: %s exists; not replacing it (use --force)\n", o->manifest_path);
    else if (o->manifest_path && manifest_inside_into(o->manifest_path, o->into))
        fprintf(stderr, "emote: %s: the manifest must lie outside --into %s, which holds only sorted images\n",
                o->manifest_path, o->into);
    else return true;
    return false;
}

static int cmd_sort(int argc, char **argv) {
    sort_options o = {.engine = ENGINE_OPTIONS_DEFAULT, .mode = MODE_COPY};
    o.engine.faces.main_face_only = true; /* --faces: one face per image (emote_main_face) */
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int num_paths = 0;
    if (!paths) {
        fprintf(stderr, "emote: out of memory\n");
        return EXIT_FATAL;
    }
    int status = parse_arguments(argc, argv, &o, paths, &num_paths);
    fit_engine_to_inputs(&o.engine, paths, num_paths);
    if (status < 0 && !check_arguments(&o, num_paths)) status = EXIT_USAGE;
    if (status < 0) status = o.undo_path ? sort_undo(o.undo_path, o.engine.quiet) : run_sort(&o, paths, num_paths);
    free(paths);
    return status;
}
