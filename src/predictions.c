#include "predictions.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
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

void prediction_free(prediction *r) {
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

static bool is_float(const cJSON *item) {
    return cJSON_IsNumber(item) && fabs(item->valuedouble) <= FLT_MAX;
}

/* "box": [x, y, w, h], finite, w and h not negative. */
static const char *parse_box(const cJSON *box, float out[4]) {
    if (!cJSON_IsArray(box) || cJSON_GetArraySize(box) != 4) return "no \"box\" of 4 numbers with its \"face\"";
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetArrayItem(box, i);
        if (!is_float(v) || (i >= 2 && v->valuedouble < 0)) return "\"box\" holds a value that is not a box coordinate";
        out[i] = (float)v->valuedouble;
    }
    return NULL;
}

/* "face": classify --faces numbers the faces of an image from 0, the largest; its "box"
 * and "face_score" come with it. */
static const char *parse_face(const cJSON *json, prediction *r) {
    const cJSON *face = cJSON_GetObjectItemCaseSensitive(json, "face");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(json, "face_score");
    r->face = -1;
    if (!face) return NULL;
    double v = cJSON_IsNumber(face) ? face->valuedouble : -1;
    if (!(v >= 0 && v <= INT_MAX && v == (int)v)) return "\"face\" is not a face index (an integer from 0)";
    if (!is_probability(score)) return "no \"face_score\" (a number in [0, 1]) with its \"face\"";
    r->face = (int)v;
    r->face_score = (float)score->valuedouble;
    return parse_box(cJSON_GetObjectItemCaseSensitive(json, "box"), r->box);
}

/* Fills r from one line; returns what is wrong with the line, or NULL. */
static const char *parse_record(const char *line, label_set *labels, prediction *r) {
    cJSON *json = cJSON_ParseWithOpts(line, NULL, true);
    const char *problem = NULL;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    if (!json) problem = "not valid JSON";
    else if (!cJSON_IsObject(json)) problem = "not a JSON object";
    else if ((problem = parse_path(json, r)) || (problem = parse_face(json, r))) {
    } else if (error && !cJSON_IsString(error)) problem = "\"error\" is not a string";
    else if (error && !(r->error = str_dup(error->valuestring))) problem = "out of memory";
    else if (!error) problem = parse_prediction(json, labels, r);
    cJSON_Delete(json);
    return problem;
}

static bool is_blank(const char *s) {
    return s[strspn(s, " \t\r\n")] == '\0';
}

/* What is wrong with the line just read, as a record into *out; NULL when it is one. */
static const char *parse_line(const line_reader *lines, label_set *labels, prediction *out) {
    memset(out, 0, sizeof *out);
    out->line = lines->number;
    const char *problem = strlen(lines->line) != lines->length ? "contains a NUL byte"
                                                                : parse_record(lines->line, labels, out);
    if (problem) prediction_free(out);
    if (problem && !lines->terminated) return "an incomplete last record (a run still going, or killed: resume it)";
    return problem;
}

void prediction_reader_start(prediction_reader *r, FILE *in, const char *name, label_set *labels) {
    memset(r, 0, sizeof *r);
    r->name = name;
    r->stream = in;
    r->labels = labels;
    line_reader_init(&r->lines, in, '\n', PREDICTIONS_MAX_LINE_BYTES);
}

emote_status prediction_reader_open(prediction_reader *r, const char *path, label_set *labels, emote_error *err) {
    memset(r, 0, sizeof *r);
    if (strcmp(path, "-") == 0) {
        prediction_reader_start(r, stdin, "<stdin>", labels);
        return EMOTE_OK;
    }
    FILE *in = fopen_regular_file(path, err);
    if (!in) return EMOTE_ERR_IO;
    prediction_reader_start(r, in, path, labels);
    r->owns_stream = true;
    return EMOTE_OK;
}

emote_status prediction_reader_next(prediction_reader *r, prediction *out, bool *got, emote_error *err) {
    line_reader *lines = &r->lines;
    *got = false;
    for (;;) {
        switch (line_reader_next(lines)) {
        case LINE_END: return EMOTE_OK;
        case LINE_TOO_LONG:
            return emote_fail(err, EMOTE_ERR_LIMIT, "%s:%ld: line longer than %u bytes", r->name, lines->number,
                              PREDICTIONS_MAX_LINE_BYTES);
        case LINE_NO_MEMORY:
            return emote_fail(err, EMOTE_ERR_MEMORY, "%s:%ld: out of memory", r->name, lines->number + 1);
        case LINE_READ_ERROR:
            return emote_fail(err, EMOTE_ERR_IO, "%s: read error after line %ld: %s", r->name, lines->number,
                              strerror(errno ? errno : EIO));
        case LINE_OK:
            if (is_blank(lines->line)) continue;
            const char *problem = parse_line(lines, r->labels, out);
            if (problem)
                return emote_fail(err, EMOTE_ERR_FORMAT, "%s:%ld: not a prediction record: %s", r->name,
                                  lines->number, problem);
            *got = true;
            return EMOTE_OK;
        }
    }
}

void prediction_reader_close(prediction_reader *r) {
    line_reader_free(&r->lines);
    if (r->owns_stream) fclose(r->stream);
    memset(r, 0, sizeof *r);
}

/* Appends r (moved in) to f and indexes its path. */
static emote_status add_record(prediction_file *f, prediction *r, emote_error *err) {
    prediction *records = array_reserve_one(f->records, f->count, &f->capacity, sizeof(prediction));
    if (records) f->records = records;
    if (!records || (r->first = table_add(&f->by_path, r->path, f->count)) < 0) {
        prediction_free(r);
        return emote_fail(err, EMOTE_ERR_MEMORY, "%s:%ld: out of memory", f->name, r->line);
    }
    records[f->count++] = *r;
    return EMOTE_OK;
}

static emote_status read_all(prediction_file *f, prediction_reader *r, emote_error *err) {
    memset(f, 0, sizeof *f);
    f->name = r->name;
    emote_status s;
    prediction record;
    for (bool got; !(s = prediction_reader_next(r, &record, &got, err)) && got;)
        if ((s = add_record(f, &record, err))) break;
    return s;
}

emote_status predictions_read(prediction_file *f, FILE *in, const char *name, label_set *labels, emote_error *err) {
    prediction_reader r;
    prediction_reader_start(&r, in, name, labels);
    emote_status s = read_all(f, &r, err);
    prediction_reader_close(&r);
    return s;
}

emote_status predictions_load(prediction_file *f, const char *path, label_set *labels, emote_error *err) {
    memset(f, 0, sizeof *f);
    prediction_reader r;
    emote_status s = prediction_reader_open(&r, path, labels, err);
    if (!s) s = read_all(f, &r, err);
    prediction_reader_close(&r);
    return s;
}
