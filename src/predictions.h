/* Prediction files: the jsonl records `emote classify -f jsonl` writes, read back (by
 * `emote diff` whole, by `emote eval --predictions` a record at a time). Untrusted input: every line is bounded, every record checked
 * (probabilities finite and in [0, 1]), and errors name the file and the line. */
#ifndef EMOTE_PREDICTIONS_H
#define EMOTE_PREDICTIONS_H

#include <stdbool.h>
#include <stdio.h>

#include "emote.h"
#include "line_reader.h"
#include "string_table.h"

/* Longest line accepted, in bytes (a record of 100,000 labels fits). */
#define PREDICTIONS_MAX_LINE_BYTES (16u * 1024u * 1024u)
/* Probabilities may exceed 1 by this much (rounding of a printed float); never below 0. */
#define PREDICTIONS_PROB_SLACK 1e-6

/* Label names shared by the files being compared, so that records compare by label id. */
typedef struct {
    char **names;
    int count, capacity;
    string_table ids;
} label_set;

/* The id of label `name`, added when new; -1 when out of memory. */
int label_id(label_set *labels, const char *name);
void label_set_free(label_set *labels);

typedef struct {
    int label;
    double prob;
} label_prob;

typedef struct {
    char *path;  /* from "path_hex" when the record has one (the exact bytes), else "path" */
    char *error; /* non-NULL: the input failed; label and probs are unset */
    int label;   /* top label */
    double confidence;
    label_prob *probs;
    int num_probs;
    int face;    /* "face" of a `classify --faces` record: 0 = the largest; -1: no such field */
    float box[4], face_score; /* with a face: "box" [x, y, w, h] and "face_score" */
    long line;
    int first; /* index of the first record with this path (itself unless a duplicate) */
} prediction;

typedef struct {
    const char *name; /* for messages: the path given, or "<stdin>" */
    prediction *records;
    int count, capacity;
    string_table by_path; /* path -> index of its first record */
} prediction_file;

/* Reads a prediction file one record at a time. */
typedef struct {
    const char *name; /* for messages: the path given, or "<stdin>" */
    FILE *stream;
    bool owns_stream;
    label_set *labels;
    line_reader lines;
} prediction_reader;

/* Reads from `in`, named `name` in messages (not closed by prediction_reader_close). */
void prediction_reader_start(prediction_reader *r, FILE *in, const char *name, label_set *labels);
/* Reads from `path`: a regular file (never a FIFO or a device), or stdin for "-". */
emote_status prediction_reader_open(prediction_reader *r, const char *path, label_set *labels, emote_error *err);
/* The next record into *out (release it with prediction_free); *got is false at the end.
 * A line that is not a record, too long, unreadable or out of memory: an error naming the
 * file and the line. Blank lines are skipped. */
emote_status prediction_reader_next(prediction_reader *r, prediction *out, bool *got, emote_error *err);
void prediction_reader_close(prediction_reader *r);
void prediction_free(prediction *r);

/* Reads every record of `in` (named `name` in messages) into f (zeroed first). */
emote_status predictions_read(prediction_file *f, FILE *in, const char *name, label_set *labels, emote_error *err);
/* The same from a regular file, or stdin for "-". */
emote_status predictions_load(prediction_file *f, const char *path, label_set *labels, emote_error *err);
void prediction_file_free(prediction_file *f);

#endif
