/* -o FILE and --resume: a prediction file that records are appended to, and what an
 * interrupted run of the same command already wrote into it.
 *
 * A record's key is its path as written (tsv/csv: the first field; jsonl: the text up to
 * the end of the "path" string). Done records are indexed by a 64-bit hash of the key and
 * the record's offset in FILE: 16 bytes per record in a table kept at most half full, so
 * at most 32 bytes per done record. A hash match counts only when the bytes at that offset
 * are the key itself followed by the field separator, so a collision never skips an input.
 *
 * FILE (a regular one) is locked (flock) for the whole run, so a second run with the same
 * -o is refused. Beside it, .NAME.emote-run holds the identity of the model and options
 * that wrote it (a text the caller gives); --resume refuses FILE when they differ. */
#ifndef EMOTE_RECORD_FILE_H
#define EMOTE_RECORD_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"

typedef struct {
    output_format format;      /* FORMAT_TSV, FORMAT_CSV or FORMAT_JSONL */
    const char *header;        /* the exact first line (with '\n') of tsv/csv, or NULL */
    int fields;                /* tsv/csv: fields in every record */
    const emote_model *model;  /* jsonl: "probs" holds exactly its labels, in order */
    bool grouped;              /* --faces: an input's records are consecutive, with one key;
                                  the last input's records are redone, as they may be torn */
    const char *identity;      /* model and options, for .NAME.emote-run; NULL: none */
} record_layout;

typedef struct record_file record_file;

/* Creates FILE for writing, or uses it when it is empty or not a regular file (a pipe);
 * refuses an existing non-empty regular file and one that another run holds locked.
 * A regular FILE gets its identity file. NULL + message in error. */
record_file *record_file_create(const char *path, const record_layout *layout, char *error);

/* Locks FILE (creating a missing one, empty) and reads it without changing it: it must be
 * a regular file, every complete record one of `layout` and its identity file (when there
 * is one) the same identity, else it is refused. Error records (grouped: with the rest of
 * their input's records), a torn last record and (grouped) the last input's records are
 * noted for dropping; the rest become the done set. Temporary files of a rewrite that was
 * killed are removed. */
record_file *record_file_scan(const char *path, const record_layout *layout, char *error);

/* The reading part of record_file_scan, on a stream (no lock, no identity file); `name`
 * is for messages. For the fuzz target. */
record_file *record_file_scan_stream(FILE *in, const char *name, const record_layout *layout, char *error);

/* True when FILE has prediction records but no identity file (written before there were
 * any): the caller checks the model in another way. */
bool record_file_identity_unknown(const record_file *f);

/* The last complete prediction record (not an error) read by record_file_scan, with its
 * '\n'; NULL when there is none. For the caller's check that the same model and options
 * give the same bytes. */
const char *record_file_last_prediction(const record_file *f, size_t *length);

/* The path a record names, as it was given (tsv: with tabs and newlines as spaces);
 * malloc'd, NULL when the record has none or out of memory. */
char *record_path(const record_layout *layout, const char *record, size_t length);

typedef struct {
    long kept, errors_dropped;
    long redone;        /* records dropped to be made again: the last input's (grouped), or
                           those of an input with an error record */
    bool torn;          /* an incomplete last record was dropped */
    int stale_removed;  /* temporary files of a killed rewrite removed */
} resume_summary;

/* Drops what scan noted (records before others: FILE is rewritten through a temporary
 * file, locked, and renamed over it; only at the end: truncated), writes the header into
 * an empty tsv/csv FILE and the identity file when it is missing, and returns the stream
 * to append records to (owned by f). NULL + message in error. */
FILE *record_file_begin(record_file *f, resume_summary *summary, char *error);

/* True when FILE already holds a record for this key and that record was not claimed by
 * an earlier call (so an input listed twice needs two records). */
bool record_file_claim(record_file *f, const char *key);

/* The stream of a file from record_file_create. */
FILE *record_file_stream(record_file *f);

/* Closes without checking (after an error). */
void record_file_free(record_file *f);

/* Flushes and closes; false + message when a write failed. */
bool record_file_close(record_file *f, char *error);

#endif
