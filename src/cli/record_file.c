/* -o FILE and --resume; see record_file.h. */
#include "record_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "atomic_file.h"
#include "string_table.h"
#include "util.h"

#define CLAIMED (UINT64_C(1) << 63)
static const char jsonl_start[] = "{\"path\":\"";
static const char jsonl_hex[] = ",\"path_hex\":\"";
static const char identity_magic[] = "emote-run 1\n"; /* the first line of an identity file */
enum { IDENTITY_MAX = 65536 };

typedef struct {
    uint64_t hash;
    uint64_t where; /* 0: empty slot; else record offset + 1, with CLAIMED once claimed */
} done_entry;

/* The records of one input as scan_records reads them (grouped: all of them; else one). */
typedef struct {
    char *key;
    size_t key_length;
    long first, count;   /* record numbers (1 = FILE's first line) */
    uint64_t bytes;
    off_t end;           /* its end in FILE as it is */
    long errors;         /* error records among them */
    char *last_prediction;
    size_t last_prediction_length;
} input_group;

struct record_file {
    char *path;   /* as given, for messages */
    char *target; /* FILE with symlinks resolved: what is locked, truncated and replaced */
    record_layout layout;
    FILE *out;
    int read_fd;     /* for checking claimed keys */
    int lock_fds[2]; /* FILE's lock; after a rewrite also the new FILE's */
    done_entry *done;
    size_t capacity, count; /* capacity: 0 or a power of two, kept at most half full */
    /* what record_file_scan found */
    long *dropped; /* record numbers to drop, ascending */
    size_t num_dropped, dropped_capacity;
    bool kept_after_drop, torn, identity_missing;
    off_t keep_end;       /* end of the last record kept (or the header) in FILE as it is */
    uint64_t kept_bytes;  /* bytes of the records kept: where the next one will be */
    long kept, errors, redone;
    int stale_removed;
    char *last_prediction;
    size_t last_prediction_length;
};

static bool failf(char *error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool failf(char *error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    format_message_v(error, EMOTE_ERROR_MAX, fmt, ap); /* a long FILE name is shortened, the reason kept */
    va_end(ap);
    return false;
}

static char separator(const record_layout *l) { return l->format == FORMAT_TSV ? '\t' : ','; }

static record_file *record_file_new(const char *path, const record_layout *layout) {
    record_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = str_dup(path);
    f->layout = *layout;
    f->read_fd = f->lock_fds[0] = f->lock_fds[1] = -1;
    if (!f->path) {
        free(f);
        return NULL;
    }
    return f;
}

/* ---- the done set ------------------------------------------------------------------ */

static void done_insert(done_entry *table, size_t capacity, done_entry e) {
    size_t i = e.hash & (capacity - 1);
    while (table[i].where) i = (i + 1) & (capacity - 1);
    table[i] = e;
}

static bool done_add(record_file *f, const char *key, size_t key_length, uint64_t offset) {
    if (2 * (f->count + 1) > f->capacity) {
        size_t capacity = f->capacity ? f->capacity * 2 : 1024;
        done_entry *table = calloc_array(capacity, sizeof *table);
        if (!table) return false;
        for (size_t i = 0; i < f->capacity; i++)
            if (f->done[i].where) done_insert(table, capacity, f->done[i]);
        free(f->done);
        f->done = table;
        f->capacity = capacity;
    }
    char *copy = malloc(key_length + 1);
    if (!copy) return false;
    memcpy(copy, key, key_length);
    copy[key_length] = '\0';
    done_insert(f->done, f->capacity, (done_entry){hash_string(copy), offset + 1});
    free(copy);
    f->count++;
    return true;
}

/* Whether FILE holds key + separator at offset. */
static bool key_at(const record_file *f, uint64_t offset, const char *key, size_t length, char *buffer) {
    ssize_t got = pread(f->read_fd, buffer, length + 1, (off_t)offset);
    return got == (ssize_t)length + 1 && memcmp(buffer, key, length) == 0 && buffer[length] == separator(&f->layout);
}

bool record_file_claim(record_file *f, const char *key) {
    if (f->count == 0) return false;
    size_t length = strlen(key);
    char *buffer = malloc(length + 1);
    if (!buffer) return false; /* not done: classifying again is the safe side */
    uint64_t h = hash_string(key);
    bool claimed = false;
    for (size_t i = h & (f->capacity - 1); f->done[i].where && !claimed; i = (i + 1) & (f->capacity - 1)) {
        done_entry *e = &f->done[i];
        if (e->hash != h || (e->where & CLAIMED)) continue;
        if (key_at(f, e->where - 1, key, length, buffer)) {
            e->where |= CLAIMED;
            claimed = true;
        }
    }
    free(buffer);
    return claimed;
}

/* ---- reading records ------------------------------------------------------------------ */

static bool quotes_balanced(const char *s, size_t n) {
    size_t quotes = 0;
    for (size_t i = 0; i < n; i++) quotes += s[i] == '"';
    return quotes % 2 == 0;
}

/* The next record of in into *buffer: a line, or for csv as many lines as a quoted field
 * spans. Returns its length (0 at the end); *complete when it ends with its newline. */
static size_t read_record(FILE *in, const record_layout *l, char **buffer, size_t *capacity, bool *complete) {
    size_t length = 0;
    char *line = NULL;
    size_t line_capacity = 0;
    ssize_t n;
    *complete = false;
    while ((n = getline(&line, &line_capacity, in)) > 0) {
        if (length + (size_t)n + 1 > *capacity) {
            size_t bigger = (length + (size_t)n + 1) * 2;
            char *grown = realloc(*buffer, bigger);
            if (!grown) break;
            *buffer = grown;
            *capacity = bigger;
        }
        memcpy(*buffer + length, line, (size_t)n);
        length += (size_t)n;
        (*buffer)[length] = '\0';
        if ((*buffer)[length - 1] != '\n') break;
        if (l->format != FORMAT_CSV || quotes_balanced(*buffer, length)) {
            *complete = true;
            break;
        }
    }
    free(line);
    return length;
}

/* Length of a record's key: the path as written, up to its field separator; 0 if none. */
static size_t key_length(const record_layout *l, const char *r, size_t length) {
    size_t i = 0;
    if (l->format == FORMAT_JSONL) {
        if (strncmp(r, jsonl_start, sizeof jsonl_start - 1) != 0) return 0;
        for (i = sizeof jsonl_start - 1; i < length && r[i] != '"'; i++)
            if (r[i] == '\\') i++;
        /* a path that is not UTF-8 is followed by its bytes in hex: both are the key */
        if (i < length && strncmp(r + i + 1, jsonl_hex, sizeof jsonl_hex - 1) == 0)
            for (i += sizeof jsonl_hex; i < length && r[i] != '"'; i++) continue;
        return i + 1 < length && r[i + 1] == ',' ? i + 1 : 0;
    }
    if (l->format == FORMAT_CSV && r[0] == '"') {
        for (i = 1; i < length; i++)
            if (r[i] == '"' && (i + 1 == length || r[++i] != '"')) break;
    }
    while (i < length && r[i] != separator(l) && r[i] != '\n') i++;
    return i < length && r[i] == separator(l) && i > 0 ? i : 0;
}

/* tsv/csv: the number of fields and whether the last one (the error column) is empty. */
static int count_fields(const record_layout *l, const char *r, size_t length, bool *last_empty) {
    int fields = 1;
    bool quoted = false;
    size_t last_start = 0;
    for (size_t i = 0; i + 1 < length; i++) { /* the final '\n' ends the record */
        if (l->format == FORMAT_CSV && r[i] == '"') quoted = !quoted;
        else if (!quoted && r[i] == separator(l)) {
            fields++;
            last_start = i + 1;
        }
    }
    *last_empty = last_start + 1 == length;
    return fields;
}

/* jsonl: what is wrong with a record, or NULL; *is_error for {"path", "error"}. */
static const char *check_json(const record_layout *l, const char *r, bool *is_error) {
    cJSON *json = cJSON_Parse(r);
    const char *problem = NULL;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(json, "probs");
    *is_error = error != NULL;
    if (!cJSON_IsObject(json)) problem = "not a JSON object";
    else if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(json, "path"))) problem = "no \"path\" string";
    else if (error) problem = cJSON_IsString(error) ? NULL : "\"error\" is not a string";
    else if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(json, "label")) || !cJSON_IsObject(probs))
        problem = "no \"label\" and \"probs\"";
    else {
        int k = 0, classes = emote_model_num_classes(l->model);
        const cJSON *p;
        cJSON_ArrayForEach(p, probs) {
            if (k >= classes || strcmp(p->string, emote_model_label(l->model, k)) || !cJSON_IsNumber(p)) break;
            k++;
        }
        if (k != classes || cJSON_GetArraySize(probs) != classes) problem = "its \"probs\" are not this model's labels";
    }
    cJSON_Delete(json);
    return problem;
}

/* What is wrong with a complete record, or NULL; *is_error for an error record. */
static const char *check_record(const record_layout *l, const char *r, size_t length, bool *is_error) {
    if (strlen(r) != length) return "it contains a NUL byte";
    if (!key_length(l, r, length)) return "it does not start with a path field";
    if (l->format == FORMAT_JSONL) return check_json(l, r, is_error);
    bool last_empty;
    if (count_fields(l, r, length, &last_empty) != l->fields) return "it has the wrong number of fields";
    *is_error = !last_empty;
    return NULL;
}

/* A torn tail is dropped only where it can be the start of one of our records. */
static bool plausible_tail(const record_file *f, const char *r, size_t length, bool any_complete) {
    if (any_complete) return true;
    const char *start = f->layout.header ? f->layout.header : f->layout.format == FORMAT_JSONL ? jsonl_start : NULL;
    return !start || strncmp(r, start, length < strlen(start) ? length : strlen(start)) == 0;
}

/* ---- scanning: which records are kept ------------------------------------------------ */

static bool note_dropped(record_file *f, long number) {
    if (f->num_dropped == f->dropped_capacity) {
        size_t capacity = f->dropped_capacity ? 2 * f->dropped_capacity : 64;
        long *grown = realloc(f->dropped, capacity * sizeof *grown);
        if (!grown) return false;
        f->dropped = grown;
        f->dropped_capacity = capacity;
    }
    f->dropped[f->num_dropped++] = number;
    return true;
}

static void group_clear(input_group *g) {
    free(g->key);
    free(g->last_prediction);
    *g = (input_group){0};
}

/* Ends group g: its records are kept (and its key done), or all dropped (to be made again)
 * when it holds an error record or `drop` says so. */
static bool end_group(record_file *f, input_group *g, bool drop) {
    bool ok = true;
    if (g->count == 0) return true;
    if (drop || g->errors) {
        for (long n = g->first; ok && n < g->first + g->count; n++) ok = note_dropped(f, n);
        f->redone += g->count - g->errors;
    } else {
        ok = done_add(f, g->key, g->key_length, f->kept_bytes);
        f->kept_after_drop |= f->num_dropped > 0;
        f->kept_bytes += g->bytes;
        f->kept += g->count;
        f->keep_end = g->end;
        free(f->last_prediction);
        f->last_prediction = g->last_prediction;
        f->last_prediction_length = g->last_prediction_length;
        g->last_prediction = NULL;
    }
    group_clear(g);
    return ok;
}

/* Adds complete record number `number` (r, length, ending at `end` in FILE) to its group,
 * ending the group before it when r starts another input. */
static bool add_to_group(record_file *f, input_group *g, long number, const char *r, size_t length, off_t end,
                         bool is_error) {
    size_t key = key_length(&f->layout, r, length);
    bool same_input = f->layout.grouped && g->count > 0 && key == g->key_length && memcmp(r, g->key, key) == 0;
    if (!same_input) {
        if (!end_group(f, g, false)) return false;
        if (!(g->key = malloc(key + 1))) return false;
        memcpy(g->key, r, key);
        g->key[key] = '\0';
        g->key_length = key;
        g->first = number;
    }
    g->count++;
    g->bytes += length;
    g->end = end;
    if (is_error) {
        g->errors++;
        f->errors++;
    } else {
        free(g->last_prediction);
        if (!(g->last_prediction = str_dup(r))) return false;
        g->last_prediction_length = length;
    }
    return true;
}

/* Reads every record of in; the file is f->path, for messages. */
static bool scan_records(record_file *f, FILE *in, char *error) {
    const record_layout *l = &f->layout;
    char *r = NULL;
    size_t capacity = 0, length;
    bool complete, ok = true;
    long number = 0;
    off_t end = 0;
    input_group g = {0};
    const char *name = l->format == FORMAT_JSONL ? "jsonl" : l->format == FORMAT_CSV ? "csv" : "tsv";
    while (ok && (length = read_record(in, l, &r, &capacity, &complete)) > 0) {
        number++;
        if (!complete) {
            f->torn = true;
            if (!plausible_tail(f, r, length, number > 1))
                ok = failf(error, "%s: not a %s prediction file (its only line is incomplete and unlike one); "
                           "refusing to resume into it, left as it is", f->path, name);
            break;
        }
        end += (off_t)length;
        if (number == 1 && l->header) {
            if (strcmp(r, l->header) != 0)
                ok = failf(error, "%s: line 1 is not the %s header of this model and options; refusing to "
                           "resume into it, left as it is", f->path, name);
            f->kept_bytes = length;
            f->keep_end = end;
            continue;
        }
        bool is_error = false;
        const char *problem = check_record(l, r, length, &is_error);
        if (problem)
            ok = failf(error, "%s:%ld: not a %s prediction record of this model: %s; refusing to resume into "
                       "it, left as it is", f->path, number, name, problem);
        else if (!add_to_group(f, &g, number, r, length, end, is_error))
            ok = failf(error, "%s: out of memory indexing %ld records", f->path, number);
    }
    if (ok && ferror(in)) ok = failf(error, "%s: cannot read: %s", f->path, strerror(errno));
    if (ok && !end_group(f, &g, l->grouped)) ok = failf(error, "%s: out of memory indexing %ld records", f->path, number);
    group_clear(&g);
    free(r);
    return ok;
}

record_file *record_file_scan_stream(FILE *in, const char *name, const record_layout *layout, char *error) {
    record_file *f = record_file_new(name, layout);
    if (!f) {
        failf(error, "%s: out of memory", name);
        return NULL;
    }
    if (!scan_records(f, in, error)) {
        record_file_free(f);
        return NULL;
    }
    return f;
}

/* ---- the lock, the identity file and stale temporary files ------------------------- */

/* Takes FILE's lock on fd for the whole run; a file system without locks is let be. */
static bool lock_file(int fd, const char *path, char *error) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 || errno == ENOLCK || errno == EOPNOTSUPP || errno == ENOSYS) return true;
    if (errno == EWOULDBLOCK)
        return failf(error, "%s: in use: another emote run is writing it (it holds its lock); not writing it "
                     "too (wait for that run, or give another -o FILE)", path);
    return failf(error, "%s: cannot lock: %s", path, strerror(errno));
}

/* FILE's resolved path, once FILE exists. */
static bool resolve_target(record_file *f, char *error) {
    if (!(f->target = realpath(f->path, NULL))) return failf(error, "%s: cannot resolve: %s", f->path, strerror(errno));
    return true;
}

/* dir/.NAME.emote-run for dir/NAME; malloc'd. */
static char *identity_path(const char *target) {
    const char *slash = strrchr(target, '/');
    size_t dir = slash ? (size_t)(slash - target) + 1 : 0, length = strlen(target) + 16;
    char *path = malloc(length);
    if (path) snprintf(path, length, "%.*s.%s.emote-run", (int)dir, target, target + dir);
    return path;
}

/* The identity file's text (malloc'd), NULL when there is none (or it is empty, or FILE's
 * name is too long to have one); false + message when it cannot be read or is not one of ours. Never
 * follows a symlink or waits on a FIFO. */
static bool read_identity(const char *path, const char *file, char **text, char *error) {
    *text = NULL;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && (errno == ENOENT || errno == ENAMETOOLONG)) return true;
    struct stat st;
    bool ok = fd >= 0 && fstat(fd, &st) == 0;
    if (!ok) failf(error, "%s: cannot read its identity file .NAME.emote-run: %s", file, strerror(errno));
    else if (S_ISREG(st.st_mode) && st.st_size == 0) {
        /* a kill between its truncation and its write: as none */
    } else if (!S_ISREG(st.st_mode) || st.st_size > IDENTITY_MAX)
        ok = failf(error, "%s: its identity file .NAME.emote-run is not emote's (not a regular file of at most %d "
                   "bytes); left as it is", file, IDENTITY_MAX);
    else if (!(*text = calloc(1, (size_t)st.st_size + 1))) ok = failf(error, "%s: out of memory", file);
    else if (read(fd, *text, (size_t)st.st_size) != st.st_size)
        ok = failf(error, "%s: cannot read its identity file .NAME.emote-run: %s", file,
                   errno ? strerror(errno) : "it shrank");
    else if (strncmp(*text, identity_magic, sizeof identity_magic - 1) != 0)
        ok = failf(error, "%s: its identity file .NAME.emote-run is not emote's (no \"emote-run 1\" line); left "
                   "as it is", file);
    if (fd >= 0) close(fd);
    if (!ok) {
        free(*text);
        *text = NULL;
    }
    return ok;
}

/* Writes FILE's identity file (replacing one of ours), synced before any record; none when
 * FILE's name is too long to have one (--resume then checks the model the old way). */
static bool write_identity(const record_file *f, char *error) {
    if (!f->layout.identity) return true;
    char *path = identity_path(f->target), *old = NULL;
    if (!path) return failf(error, "%s: out of memory", f->path);
    bool ok = read_identity(path, f->path, &old, error);
    int fd = ok ? open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666) : -1;
    bool too_long = fd < 0 && errno == ENAMETOOLONG;
    size_t length = strlen(identity_magic) + strlen(f->layout.identity);
    char *text = malloc(length + 1);
    if (ok && text) snprintf(text, length + 1, "%s%s", identity_magic, f->layout.identity);
    if (ok && !too_long &&
        (fd < 0 || !text || ftruncate(fd, 0) != 0 || write(fd, text, length) != (ssize_t)length || fsync(fd) != 0))
        ok = failf(error, "%s: cannot write its identity file .NAME.emote-run: %s", f->path,
                   text ? strerror(errno) : "out of memory");
    if (fd >= 0) close(fd);
    free(text);
    free(old);
    free(path);
    return ok;
}

/* Compares FILE's identity file with this run's; none: f->identity_missing. */
static bool check_identity(record_file *f, char *error) {
    if (!f->layout.identity) return true;
    char *path = identity_path(f->target), *text = NULL;
    if (!path) return failf(error, "%s: out of memory", f->path);
    bool ok = read_identity(path, f->path, &text, error);
    f->identity_missing = ok && !text;
    if (ok && text && f->kept > 0 && strcmp(text + sizeof identity_magic - 1, f->layout.identity) != 0)
        ok = failf(error, "%s: written by another model or other options than these (as its identity file "
                   ".NAME.emote-run says); refusing to resume into it, left as it is", f->path);
    free(text);
    free(path);
    return ok;
}

bool record_file_identity_unknown(const record_file *f) { return f->identity_missing && f->kept > 0; }

record_file *record_file_scan(const char *path, const record_layout *layout, char *error) {
    record_file *f = record_file_new(path, layout);
    if (!f) {
        failf(error, "%s: out of memory", path);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
    FILE *in = NULL;
    struct stat st;
    bool ok = fd >= 0;
    if (!ok) failf(error, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(fd, &st) != 0) ok = failf(error, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        ok = failf(error, "%s: not a regular file; --resume reads FILE back, so it needs one", path);
    else if ((ok = lock_file(fd, path, error) && resolve_target(f, error))) {
        f->lock_fds[0] = fd;
        fd = -1;
        f->stale_removed = atomic_remove_temps_of(f->target); /* of a killed rewrite; FILE's lock is held */
        if (!(in = fopen(f->target, "r"))) ok = failf(error, "%s: cannot open: %s", path, strerror(errno));
        else ok = scan_records(f, in, error) && check_identity(f, error);
    }
    if (fd >= 0) close(fd);
    if (in) fclose(in);
    if (!ok) {
        record_file_free(f);
        return NULL;
    }
    return f;
}

const char *record_file_last_prediction(const record_file *f, size_t *length) {
    *length = f->last_prediction_length;
    return f->last_prediction;
}

static char *hex_decode(const char *hex) {
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; out && i < n; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (char)byte;
    }
    if (out) out[n] = '\0';
    return out;
}

char *record_path(const record_layout *l, const char *r, size_t length) {
    size_t n = key_length(l, r, length);
    if (n == 0) return NULL;
    if (l->format == FORMAT_JSONL) {
        cJSON *json = cJSON_Parse(r);
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(json, "path");
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(json, "path_hex");
        char *copy = cJSON_IsString(hex) ? hex_decode(hex->valuestring)
                     : cJSON_IsString(path) ? str_dup(path->valuestring) : NULL;
        cJSON_Delete(json);
        return copy;
    }
    char *path = malloc(n + 1);
    if (!path) return NULL;
    bool quoted = l->format == FORMAT_CSV && r[0] == '"';
    size_t out = 0;
    for (size_t i = quoted; i < n - quoted; i++) {
        path[out++] = r[i];
        if (quoted && r[i] == '"') i++; /* "" is one quote */
    }
    path[out] = '\0';
    return path;
}

/* ---- writing ------------------------------------------------------------------------ */

static bool write_header(record_file *f, char *error) {
    struct stat st;
    if (!f->layout.header || fstat(fileno(f->out), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 0) return true;
    if (fputs(f->layout.header, f->out) < 0 || fflush(f->out) != 0)
        return failf(error, "%s: cannot write: %s", f->path, strerror(errno));
    return true;
}

/* A regular FILE: locked, empty, with its identity file. */
static bool claim_new_file(record_file *f, int fd, char *error) {
    struct stat st;
    if (fstat(fd, &st) != 0) return failf(error, "%s: cannot stat: %s", f->path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return true;
    if (!lock_file(fd, f->path, error)) return false;
    if (fstat(fd, &st) != 0) return failf(error, "%s: cannot stat: %s", f->path, strerror(errno));
    if (st.st_size > 0) return failf(error, "%s: exists and is not empty; give --resume to continue it, or remove it", f->path);
    return resolve_target(f, error) && write_identity(f, error);
}

record_file *record_file_create(const char *path, const record_layout *layout, char *error) {
    record_file *f = record_file_new(path, layout);
    int fd = f ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666) : -1;
    if (!f) failf(error, "%s: out of memory", path);
    else if (fd < 0) failf(error, "%s: cannot create: %s", path, strerror(errno));
    else if (claim_new_file(f, fd, error)) {
        if (!(f->out = fdopen(fd, "w"))) failf(error, "%s: cannot open: %s", path, strerror(errno));
        else if (write_header(f, error)) return f;
    }
    if (fd >= 0 && !(f && f->out)) close(fd);
    record_file_free(f);
    return NULL;
}

static bool is_dropped(const record_file *f, long number, size_t *next) {
    while (*next < f->num_dropped && f->dropped[*next] < number) ++*next;
    return *next < f->num_dropped && f->dropped[*next] == number;
}

/* Copies the records of FILE (in) that are kept to out; false when a read or write failed. */
static bool copy_kept_records(record_file *f, FILE *in, FILE *out) {
    char *r = NULL;
    size_t capacity = 0, n, next = 0;
    bool complete, ok = true;
    for (long number = 1; ok && (n = read_record(in, &f->layout, &r, &capacity, &complete)) > 0 && complete; number++)
        if (!is_dropped(f, number, &next)) ok = fwrite(r, 1, n, out) == n;
    free(r);
    return ok && !ferror(in);
}

/* Writes FILE's kept records through atomic_file (a temporary file beside it, with FILE's
 * permissions and locked, so that the new FILE is locked once it has the name) and renames it
 * over FILE: a kill at any moment leaves one of the two whole (and the temporary file, which
 * the next --resume removes). *lock: the temporary file's lock, kept open. */
static bool write_kept_records(record_file *f, FILE *in, atomic_file *a, int *lock, char *error) {
    emote_error err;
    struct stat st;
    if (atomic_file_begin_for(a, f->target, &err)) return failf(error, "%s: cannot rewrite it: %s", f->path, err.message);
    if ((*lock = dup(fileno(a->f))) < 0 || !lock_file(*lock, f->path, error)) {
        if (*lock < 0) failf(error, "%s: cannot rewrite it: %s", f->path, strerror(errno));
        return false;
    }
    errno = 0;
    if (fstat(fileno(in), &st) != 0 || fchmod(fileno(a->f), st.st_mode & 07777) != 0 || !copy_kept_records(f, in, a->f))
        return failf(error, "%s: cannot rewrite it without the records to drop: %s", f->path,
                     strerror(errno ? errno : EIO));
    if (atomic_file_finish(a, &err)) return failf(error, "%s: cannot rewrite it: %s", f->path, err.message);
    if (atomic_file_publish(a, f->target, true, &err) != ATOMIC_PUBLISHED || sync_folder_of(f->target, &err))
        return failf(error, "%s: cannot replace it: %s", f->path, err.message);
    return true;
}

/* Drops the records noted and the torn tail by rewriting FILE; the new FILE stays locked. */
static bool rewrite_without_dropped(record_file *f, char *error) {
    FILE *in = fopen(f->target, "r");
    if (!in) return failf(error, "%s: cannot open: %s", f->path, strerror(errno));
    atomic_file a = {0};
    int lock = -1;
    bool ok = write_kept_records(f, in, &a, &lock, error);
    fclose(in);
    atomic_file_discard(&a); /* the temporary file, unless it took FILE's name */
    if (ok) f->lock_fds[1] = lock;
    else if (lock >= 0) close(lock);
    return ok;
}

/* Drops what scan noted: a rewrite when kept records follow a dropped one, else a truncation. */
static bool drop_noted_records(record_file *f, char *error) {
    struct stat st;
    if (f->kept_after_drop) return rewrite_without_dropped(f, error);
    if (stat(f->target, &st) != 0) return failf(error, "%s: cannot stat: %s", f->path, strerror(errno));
    if (st.st_size > f->keep_end && truncate(f->target, f->keep_end) != 0)
        return failf(error, "%s: cannot drop its last records: %s", f->path, strerror(errno));
    return true;
}

FILE *record_file_begin(record_file *f, resume_summary *summary, char *error) {
    *summary = (resume_summary){f->kept, f->errors, f->redone, f->torn, f->stale_removed};
    if (!drop_noted_records(f, error)) return NULL;
    if ((f->identity_missing || f->kept == 0) && !write_identity(f, error)) return NULL;
    f->out = fopen(f->target, "a");
    f->read_fd = open(f->target, O_RDONLY | O_CLOEXEC);
    if (!f->out || f->read_fd < 0) {
        failf(error, "%s: cannot open: %s", f->path, strerror(errno));
        return NULL;
    }
    return write_header(f, error) ? f->out : NULL;
}

FILE *record_file_stream(record_file *f) { return f->out; }

void record_file_free(record_file *f) {
    if (!f) return;
    if (f->out) fclose(f->out);
    if (f->read_fd >= 0) close(f->read_fd);
    for (int i = 0; i < 2; i++)
        if (f->lock_fds[i] >= 0) close(f->lock_fds[i]);
    free(f->done);
    free(f->dropped);
    free(f->last_prediction);
    free(f->target);
    free(f->path);
    free(f);
}

bool record_file_close(record_file *f, char *error) {
    bool ok = true;
    if (f && f->out) {
        ok = fflush(f->out) == 0 && !ferror(f->out);
        if (!ok) failf(error, "%s: cannot write: %s", f->path, strerror(errno ? errno : EIO));
        if (fclose(f->out) != 0 && ok) ok = failf(error, "%s: cannot write: %s", f->path, strerror(errno));
        f->out = NULL;
    }
    record_file_free(f);
    return ok;
}
