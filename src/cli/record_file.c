/* -o FILE and --resume; see record_file.h. */
#include "record_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "string_table.h"
#include "util.h"

#define CLAIMED (UINT64_C(1) << 63)
static const char jsonl_start[] = "{\"path\":\"";
static const char jsonl_hex[] = ",\"path_hex\":\"";

typedef struct {
    uint64_t hash;
    uint64_t where; /* 0: empty slot; else record offset + 1, with CLAIMED once claimed */
} done_entry;

struct record_file {
    char *path;
    record_layout layout;
    FILE *out;
    int read_fd; /* for checking claimed keys */
    done_entry *done;
    size_t capacity, count; /* capacity: 0 or a power of two, kept at most half full */
    /* what record_file_scan found */
    bool exists, rewrite, torn;
    off_t complete_end; /* end of the last complete record in FILE as it was */
    long kept, errors;
    char *last_prediction;
    size_t last_prediction_length;
};

static bool failf(char *error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool failf(char *error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, EMOTE_ERROR_MAX, fmt, ap);
    va_end(ap);
    return false;
}

static char separator(const record_layout *l) { return l->format == FORMAT_TSV ? '\t' : ','; }

static record_file *record_file_new(const char *path, const record_layout *layout) {
    record_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = str_dup(path);
    f->layout = *layout;
    f->read_fd = -1;
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

/* Reads every record of in; the file is f->path, for messages. */
static bool scan_records(record_file *f, FILE *in, char *error) {
    const record_layout *l = &f->layout;
    char *r = NULL;
    size_t capacity = 0, length;
    bool complete, ok = true;
    long number = 0;
    uint64_t kept_bytes = 0;
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
        if (number == 1 && l->header) {
            if (strcmp(r, l->header) != 0)
                ok = failf(error, "%s: line 1 is not the %s header of this model and options; refusing to "
                           "resume into it, left as it is", f->path, name);
            kept_bytes += length;
            f->complete_end += (off_t)length;
            continue;
        }
        bool is_error = false;
        const char *problem = check_record(l, r, length, &is_error);
        if (problem) {
            ok = failf(error, "%s:%ld: not a %s prediction record of this model: %s; refusing to resume into "
                       "it, left as it is", f->path, number, name, problem);
        } else if (is_error) {
            f->errors++;
            f->rewrite = true;
        } else if (!done_add(f, r, key_length(l, r, length), kept_bytes)) {
            ok = failf(error, "%s: out of memory indexing %ld records", f->path, f->kept);
        } else {
            f->kept++;
            kept_bytes += length;
            free(f->last_prediction);
            f->last_prediction = str_dup(r);
            f->last_prediction_length = length;
        }
        f->complete_end += (off_t)length;
    }
    if (ok && ferror(in)) ok = failf(error, "%s: cannot read: %s", f->path, strerror(errno));
    free(r);
    return ok;
}

record_file *record_file_scan(const char *path, const record_layout *layout, char *error) {
    record_file *f = record_file_new(path, layout);
    if (!f) {
        failf(error, "%s: out of memory", path);
        return NULL;
    }
    FILE *in = fopen(path, "r");
    if (!in && errno == ENOENT) return f;
    struct stat st;
    bool ok = in != NULL;
    if (!ok) failf(error, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode))
        ok = failf(error, "%s: --resume needs a regular file", path);
    else ok = scan_records(f, in, error);
    f->exists = in != NULL;
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

record_file *record_file_create(const char *path, const record_layout *layout, char *error) {
    record_file *f = record_file_new(path, layout);
    int fd = f ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666) : -1;
    struct stat st;
    if (!f) failf(error, "%s: out of memory", path);
    else if (fd < 0) failf(error, "%s: cannot create: %s", path, strerror(errno));
    else if (fstat(fd, &st) != 0) failf(error, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISREG(st.st_mode) && st.st_size > 0)
        failf(error, "%s: exists and is not empty; give --resume to continue it, or remove it", path);
    else if (!(f->out = fdopen(fd, "w"))) failf(error, "%s: cannot open: %s", path, strerror(errno));
    else if (write_header(f, error)) return f;
    if (fd >= 0 && !(f && f->out)) close(fd);
    record_file_free(f);
    return NULL;
}

/* Copies FILE without its error records and torn tail to a temporary file in the same
 * folder, then renames it over FILE: a kill at any moment leaves one of the two whole. */
static bool rewrite_without_errors(record_file *f, char *error) {
    size_t length = strlen(f->path);
    char *temp = malloc(length + 16);
    if (!temp) return failf(error, "%s: out of memory", f->path);
    snprintf(temp, length + 16, "%s.tmp-XXXXXX", f->path);
    int fd = mkstemp(temp);
    FILE *in = fopen(f->path, "r"), *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    struct stat st;
    bool ok = in && out && fstat(fileno(in), &st) == 0 && fchmod(fd, st.st_mode & 07777) == 0;
    char *r = NULL;
    size_t capacity = 0, n;
    bool complete;
    for (long number = 1; ok && (n = read_record(in, &f->layout, &r, &capacity, &complete)) > 0 && complete; number++) {
        bool is_error = false;
        if (!(number == 1 && f->layout.header)) check_record(&f->layout, r, n, &is_error);
        if (!is_error) ok = fwrite(r, 1, n, out) == n;
    }
    free(r);
    ok = ok && fflush(out) == 0 && fsync(fd) == 0;
    if (!ok) failf(error, "%s: cannot rewrite without its error records (through %s): %s", f->path, temp, strerror(errno));
    if (in) fclose(in);
    if (out) fclose(out);
    else if (fd >= 0) close(fd);
    if (ok && rename(temp, f->path) != 0) ok = failf(error, "%s: cannot replace: %s", f->path, strerror(errno));
    if (!ok && fd >= 0) unlink(temp);
    free(temp);
    return ok;
}

FILE *record_file_begin(record_file *f, resume_summary *summary, char *error) {
    *summary = (resume_summary){f->kept, f->errors, f->torn};
    if (f->rewrite && !rewrite_without_errors(f, error)) return NULL;
    if (!f->rewrite && f->torn && truncate(f->path, f->complete_end) != 0) {
        failf(error, "%s: cannot drop its incomplete last record: %s", f->path, strerror(errno));
        return NULL;
    }
    f->out = fopen(f->path, "a");
    f->read_fd = open(f->path, O_RDONLY | O_CLOEXEC);
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
    free(f->done);
    free(f->last_prediction);
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
