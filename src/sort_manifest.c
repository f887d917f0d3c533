/* The sort manifest reader: bounded records, CSV or JSON lines, nothing trusted. */
#include "sort_manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *const sort_action_names[SORT_NUM_ACTIONS] = {"copied", "linked", "symlinked", "moved", "already-sorted",
                                                         "failed"};

enum { SOURCE, DESTINATION };
enum { CSV_FIELDS = 5, CSV_ACTION = 4 };

typedef enum { RECORD_OK, RECORD_END, RECORD_INCOMPLETE, RECORD_TOO_LONG, RECORD_READ_ERROR, RECORD_NO_MEMORY } record_status;

static bool append_byte(sort_manifest_reader *r, int c) {
    if (r->length + 1 >= r->capacity) {
        size_t bigger = r->capacity ? r->capacity * 2 : 1024;
        char *grown = realloc(r->record, bigger);
        if (!grown) return false;
        r->record = grown;
        r->capacity = bigger;
    }
    r->record[r->length++] = (char)c;
    r->record[r->length] = '\0';
    return true;
}

/* One record up to its newline (a newline inside CSV quotes belongs to the record). */
static record_status read_record(sort_manifest_reader *r) {
    r->length = 0;
    if (!r->record && !append_byte(r, 0)) return RECORD_NO_MEMORY; /* an empty record is "" */
    r->length = 0;
    r->record[0] = '\0';
    bool quoted = false;
    for (;;) {
        int c = getc(r->in);
        if (c == EOF) {
            if (ferror(r->in)) return RECORD_READ_ERROR;
            return r->length ? RECORD_INCOMPLETE : RECORD_END;
        }
        if (c == '\n' && !quoted) return RECORD_OK;
        if (c == '"' && !r->jsonl) quoted = !quoted;
        if (r->length >= SORT_MANIFEST_MAX_ROW) return RECORD_TOO_LONG;
        if (!append_byte(r, c)) return RECORD_NO_MEMORY;
    }
}

static void clear_fields(sort_manifest_reader *r) {
    for (int i = 0; i < 2; i++) {
        free(r->fields[i]);
        r->fields[i] = NULL;
    }
}

/* ---- CSV ------------------------------------------------------------------------------- */

/* The field at *p (quoted or not), decoded into a malloc'd string; *p moves past it and
 * its comma. NULL on a malformed field (or out of memory: *no_memory). */
static char *csv_field(const char **p, const char *end, bool *no_memory) {
    const char *s = *p;
    char *out = malloc((size_t)(end - s) + 1), *o = out;
    if (!out) {
        *no_memory = true;
        return NULL;
    }
    if (s < end && *s == '"') {
        for (s++;; s++) {
            if (s == end) goto bad; /* no closing quote */
            if (*s == '"' && s + 1 < end && s[1] == '"') *o++ = *s++;
            else if (*s == '"') break;
            else *o++ = *s;
        }
        s++;
    } else {
        for (; s < end && *s != ','; s++) {
            if (*s == '"') goto bad;
            *o++ = *s;
        }
    }
    if (s < end && *s != ',') goto bad;
    *o = '\0';
    *p = s + 1; /* past the comma, or one past the end: no more fields */
    return out;
bad:
    free(out);
    return NULL;
}

/* Decodes the record's five fields; the action's text into action (cap bytes). */
static const char *parse_csv_row(sort_manifest_reader *r, char *action, size_t cap, bool *no_memory) {
    const char *p = r->record, *end = r->record + r->length;
    for (int i = 0; i < CSV_FIELDS; i++) {
        if (p > end) return "too few fields";
        char *field = csv_field(&p, end, no_memory);
        if (!field) return *no_memory ? "out of memory" : "a malformed quoted field";
        if (i <= DESTINATION) r->fields[i] = field;
        else {
            if (i == CSV_ACTION) snprintf(action, cap, "%s", field);
            free(field);
        }
    }
    if (p <= end) return "too many fields";
    return NULL;
}

/* ---- JSON lines ------------------------------------------------------------------------ */

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The bytes hex spells, as a string; NULL when it is not even-length hex of non-NUL bytes. */
static char *from_hex(const char *hex, bool *no_memory) {
    size_t n = strlen(hex);
    if (n % 2) return NULL;
    char *out = malloc(n / 2 + 1);
    if (!out) {
        *no_memory = true;
        return NULL;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[i] = (char)(hi * 16 + lo);
    }
    out[n / 2] = '\0';
    return out;
}

/* The path under key (its _hex twin preferred): *out malloc'd, or NULL for null or absent.
 * Returns a complaint, or NULL. */
static const char *json_path(const cJSON *row, const char *key, char **out, bool *no_memory) {
    char hex_key[32];
    snprintf(hex_key, sizeof hex_key, "%s_hex", key);
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(row, hex_key);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(row, key);
    *out = NULL;
    if (hex) {
        if (!cJSON_IsString(hex) || !(*out = from_hex(hex->valuestring, no_memory)))
            return *no_memory ? "out of memory" : "a _hex path that is not hex";
        return NULL;
    }
    if (!text || cJSON_IsNull(text)) return NULL;
    if (!cJSON_IsString(text)) return "a path that is not a string";
    if (!(*out = str_dup(text->valuestring))) *no_memory = true;
    return *no_memory ? "out of memory" : NULL;
}

static const char *parse_json_row(sort_manifest_reader *r, char *action, size_t cap, bool *no_memory) {
    cJSON *row = cJSON_ParseWithLength(r->record, r->length);
    if (!cJSON_IsObject(row)) {
        cJSON_Delete(row);
        return "not a JSON object";
    }
    const char *why = json_path(row, "source", &r->fields[SOURCE], no_memory);
    if (!why) why = json_path(row, "destination", &r->fields[DESTINATION], no_memory);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(row, "action");
    if (!why && !cJSON_IsString(a)) why = "no \"action\"";
    if (!why) snprintf(action, cap, "%s", a->valuestring);
    cJSON_Delete(row);
    return why;
}

/* ---- rows ------------------------------------------------------------------------------ */

static bool parse_action(const char *text, sort_action *action) {
    for (int i = 0; i < SORT_NUM_ACTIONS; i++)
        if (strcmp(text, sort_action_names[i]) == 0) {
            *action = (sort_action)i;
            return true;
        }
    return false;
}

/* Decodes the record into row; a complaint, or NULL. */
static const char *parse_row(sort_manifest_reader *r, sort_manifest_row *row, bool *no_memory) {
    if (memchr(r->record, '\0', r->length)) return "a NUL byte";
    char action[32] = "";
    const char *why = r->jsonl ? parse_json_row(r, action, sizeof action, no_memory)
                               : parse_csv_row(r, action, sizeof action, no_memory);
    if (why) return why;
    if (!parse_action(action, &row->action)) return "an unknown action";
    if (!r->fields[SOURCE] || !*r->fields[SOURCE]) return "no source";
    if (r->fields[DESTINATION] && !*r->fields[DESTINATION]) {
        free(r->fields[DESTINATION]);
        r->fields[DESTINATION] = NULL;
    }
    if (!r->fields[DESTINATION] && row->action != SORT_ACTION_FAILED) return "no destination";
    row->source = r->fields[SOURCE];
    row->destination = r->fields[DESTINATION];
    return NULL;
}

static emote_status record_error(const sort_manifest_reader *r, record_status s, emote_error *err) {
    switch (s) {
    case RECORD_TOO_LONG:
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: row %ld is longer than %d bytes", r->name, r->rows,
                          SORT_MANIFEST_MAX_ROW);
    case RECORD_READ_ERROR: return emote_fail(err, EMOTE_ERR_IO, "%s: cannot read: %s", r->name, strerror(errno));
    case RECORD_INCOMPLETE:
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: row %ld is incomplete (cut short by a kill?)", r->name, r->rows);
    default: return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", r->name);
    }
}

emote_status sort_manifest_open(sort_manifest_reader *r, FILE *in, const char *name, emote_error *err) {
    memset(r, 0, sizeof *r);
    r->in = in;
    r->name = name;
    int first = getc(in);
    if (first == EOF) return emote_fail(err, EMOTE_ERR_FORMAT, "%s: empty: not a sort manifest", name);
    ungetc(first, in);
    r->jsonl = first == '{';
    if (r->jsonl) return EMOTE_OK;
    record_status s = read_record(r);
    if (s == RECORD_OK && strcmp(r->record, "source,destination,label,confidence,action") == 0) return EMOTE_OK;
    if (s == RECORD_OK || s == RECORD_TOO_LONG || s == RECORD_INCOMPLETE)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: not a sort manifest (no CSV header, not JSON lines)", name);
    return record_error(r, s, err);
}

manifest_read_status sort_manifest_next(sort_manifest_reader *r, sort_manifest_row *row, emote_error *err) {
    clear_fields(r);
    r->rows++;
    record_status s = read_record(r);
    if (s == RECORD_END) return MANIFEST_END;
    if (s == RECORD_INCOMPLETE && !memchr(r->record, '\n', r->length)) { /* a cut last line */
        record_error(r, s, err);
        return MANIFEST_INCOMPLETE;
    }
    if (s == RECORD_INCOMPLETE) {
        emote_fail(err, EMOTE_ERR_FORMAT, "%s: row %ld: a quote that is never closed", r->name, r->rows);
        return MANIFEST_BAD;
    }
    if (s != RECORD_OK) {
        record_error(r, s, err);
        return MANIFEST_BAD;
    }
    bool no_memory = false;
    const char *why = parse_row(r, row, &no_memory);
    if (!why) {
        row->number = r->rows;
        return MANIFEST_ROW;
    }
    emote_fail(err, no_memory ? EMOTE_ERR_MEMORY : EMOTE_ERR_FORMAT, "%s: row %ld: %s", r->name, r->rows, why);
    return MANIFEST_BAD;
}

void sort_manifest_close(sort_manifest_reader *r) {
    clear_fields(r);
    free(r->record);
    r->record = NULL;
}
