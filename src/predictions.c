#include "predictions.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "line_reader.h"
#include "util.h"

int label_id(label_set *l, const char *name) {
    int id = table_find(&l->ids, name);
    if (id >= 0) return id;
    char *copy = str_dup(name);
    char **names = array_reserve_one(l->names, l->count, &l->capacity, sizeof(char *));
    if (names) l->names = names;
    if (!copy || !names || table_add(&l->ids, copy, l->count) < 0) {
        free(copy);
        return -1;
    }
    names[l->count] = copy;
    return l->count++;
}

void label_set_free(label_set *l) {
    for (int i = 0; i < l->count; i++) free(l->names[i]);
    free(l->names);
    table_free(&l->ids);
    memset(l, 0, sizeof *l);
}

static void prediction_free(prediction *r) {
    free(r->path);
    free(r->error);
    free(r->probs);
}

void prediction_file_free(prediction_file *f) {
    for (int i = 0; i < f->count; i++) prediction_free(&f->records[i]);
    free(f->records);
    table_free(&f->by_path);
    memset(f, 0, sizeof *f);
}

static bool is_probability(const cJSON *item) {
    return cJSON_IsNumber(item) && isfinite(item->valuedouble) && item->valuedouble >= 0 &&
           item->valuedouble <= 1 + PREDICTIONS_PROB_SLACK;
}

static const char *parse_probs(const cJSON *probs, label_set *labels, prediction *r) {
    int n = cJSON_GetArraySize(probs);
    r->probs = calloc_array((size_t)(n > 0 ? n : 1), sizeof(label_prob));
    if (!r->probs) return "out of memory";
    const cJSON *p;
    cJSON_ArrayForEach(p, probs) {
        if (!is_probability(p)) return "\"probs\" holds a value that is not a probability (a number in [0, 1])";
        int id = label_id(labels, p->string);
        if (id < 0) return "out of memory";
        r->probs[r->num_probs++] = (label_prob){id, p->valuedouble};
    }
    return NULL;
}

static const char *parse_prediction(const cJSON *json, label_set *labels, prediction *r) {
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(json, "label");
    const cJSON *confidence = cJSON_GetObjectItemCaseSensitive(json, "confidence");
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(json, "probs");
    if (!cJSON_IsString(label)) return "no \"label\" string (nor an \"error\")";
    if (!is_probability(confidence)) return "no \"confidence\" probability (a number in [0, 1])";
    if (!cJSON_IsObject(probs)) return "no \"probs\" object";
    r->label = label_id(labels, label->valuestring);
    if (r->label < 0) return "out of memory";
    r->confidence = confidence->valuedouble;
    return parse_probs(probs, labels, r);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "path_hex": the path's bytes in hex, written when the path is not valid UTF-8. */
static const char *decode_path_hex(const char *hex, char **out) {
    size_t n = strlen(hex);
    if (n == 0 || n % 2) return "\"path_hex\" is not an even number of hex digits";
    char *path = malloc(n / 2 + 1);
    if (!path) return "out of memory";
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(path);
            return "\"path_hex\" holds a byte that is not a hex pair, or a NUL";
        }
        path[i] = (char)(hi << 4 | lo);
    }
    path[n / 2] = '\0';
    *out = path;
    return NULL;
}

static const char *parse_path(const cJSON *json, prediction *r) {
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(json, "path");
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(json, "path_hex");
    if (!cJSON_IsString(path)) return "no \"path\" string";
    if (hex && !cJSON_IsString(hex)) return "\"path_hex\" is not a string";
    if (hex) return decode_path_hex(hex->valuestring, &r->path);
    return (r->path = str_dup(path->valuestring)) ? NULL : "out of memory";
}

/* Fills r from one line; returns what is wrong with the line, or NULL. */
static const char *parse_record(const char *line, label_set *labels, prediction *r) {
    cJSON *json = cJSON_ParseWithOpts(line, NULL, true);
    const char *problem = NULL;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    if (!json) problem = "not valid JSON";
    else if (!cJSON_IsObject(json)) problem = "not a JSON object";
    else if ((problem = parse_path(json, r))) {
    } else if (error && !cJSON_IsString(error)) problem = "\"error\" is not a string";
    else if (error && !(r->error = str_dup(error->valuestring))) problem = "out of memory";
    else if (!error) problem = parse_prediction(json, labels, r);
    cJSON_Delete(json);
    return problem;
}

static bool is_blank(const char *s) {
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* Parses one non-blank line into the next record and indexes its path. */
static emote_status add_line(prediction_file *f, label_set *labels, const char *line, size_t length, long number,
                             emote_error *err) {
    prediction *records = array_reserve_one(f->records, f->count, &f->capacity, sizeof(prediction));
    if (!records) return emote_fail(err, EMOTE_ERR_MEMORY, "%s:%ld: out of memory", f->name, number);
    f->records = records;
    prediction *r = &records[f->count];
    memset(r, 0, sizeof *r);
    r->line = number;
    const char *problem = strlen(line) != length ? "contains a NUL byte" : parse_record(line, labels, r);
    if (!problem && (r->first = table_add(&f->by_path, r->path, f->count)) < 0) problem = "out of memory";
    if (problem) {
        prediction_free(r);
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s:%ld: not a prediction record: %s", f->name, number, problem);
    }
    f->count++;
    return EMOTE_OK;
}

emote_status predictions_read(prediction_file *f, FILE *in, const char *name, label_set *labels, emote_error *err) {
    memset(f, 0, sizeof *f);
    f->name = name;
    line_reader lines;
    line_reader_init(&lines, in, '\n', PREDICTIONS_MAX_LINE_BYTES);
    emote_status s = EMOTE_OK;
    for (line_status ls; !s && (ls = line_reader_next(&lines)) != LINE_END;) {
        if (ls == LINE_TOO_LONG)
            s = emote_fail(err, EMOTE_ERR_LIMIT, "%s:%ld: line longer than %u bytes", name, lines.number,
                           PREDICTIONS_MAX_LINE_BYTES);
        else if (ls == LINE_NO_MEMORY)
            s = emote_fail(err, EMOTE_ERR_MEMORY, "%s:%ld: out of memory", name, lines.number + 1);
        else if (ls == LINE_READ_ERROR)
            s = emote_fail(err, EMOTE_ERR_IO, "%s: read error after line %ld: %s", name, lines.number,
                           strerror(errno ? errno : EIO));
        else if (!is_blank(lines.line))
            s = add_line(f, labels, lines.line, lines.length, lines.number, err);
    }
    line_reader_free(&lines);
    return s;
}

emote_status predictions_load(prediction_file *f, const char *path, label_set *labels, emote_error *err) {
    memset(f, 0, sizeof *f);
    if (strcmp(path, "-") == 0) return predictions_read(f, stdin, "<stdin>", labels, err);
    FILE *in = fopen_regular_file(path, err);
    if (!in) return EMOTE_ERR_IO;
    emote_status s = predictions_read(f, in, path, labels, err);
    fclose(in);
    return s;
}
