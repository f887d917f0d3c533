/* Reading the manifest `emote sort --manifest` writes (for `sort --undo` and `--append`).
 *
 * CSV: the header "source,destination,label,confidence,action", then one RFC 4180 record of
 * five fields per row (quoted fields may hold commas, quotes and newlines). JSON lines: one
 * object per row with "source", "destination" (null on failed rows), "label",
 * "confidence", "action" and, for a path that is not UTF-8, "source_hex" /
 * "destination_hex" with its exact bytes. A row is written just before its file is placed,
 * so the last row of a run of rows with the same source is the one that counts. A last row
 * without its newline was cut short by a kill: it is reported as incomplete. */
#ifndef EMOTE_SORT_MANIFEST_H
#define EMOTE_SORT_MANIFEST_H

#include <stdbool.h>
#include <stdio.h>

#include "emote.h"

#define SORT_MANIFEST_CSV_HEADER "source,destination,label,confidence,action\n"
#define SORT_MANIFEST_MAX_ROW (256 * 1024) /* bytes */

typedef enum {
    SORT_ACTION_COPIED,
    SORT_ACTION_LINKED,
    SORT_ACTION_SYMLINKED,
    SORT_ACTION_MOVED,
    SORT_ACTION_ALREADY_SORTED,
    SORT_ACTION_FAILED,
    SORT_NUM_ACTIONS
} sort_action;

extern const char *const sort_action_names[SORT_NUM_ACTIONS];

typedef struct {
    const char *source, *destination; /* destination NULL on failed rows; owned by the reader */
    sort_action action;
    long number; /* 1-based row number (the header not counted) */
} sort_manifest_row;

typedef struct {
    FILE *in;
    const char *name;
    bool jsonl;
    long rows;
    char *record; /* the raw record last read */
    size_t length, capacity;
    char *fields[2]; /* source, destination: decoded, owned */
} sort_manifest_reader;

typedef enum { MANIFEST_ROW, MANIFEST_END, MANIFEST_INCOMPLETE, MANIFEST_BAD } manifest_read_status;

/* Starts reading: JSON lines when the first byte is '{', else the CSV header is required.
 * name is used in messages. */
emote_status sort_manifest_open(sort_manifest_reader *r, FILE *in, const char *name, emote_error *err);
/* The next row. MANIFEST_INCOMPLETE: a last row without its newline (err says so);
 * MANIFEST_BAD: a malformed row or a read error (err names the file and the row). */
manifest_read_status sort_manifest_next(sort_manifest_reader *r, sort_manifest_row *row, emote_error *err);
void sort_manifest_close(sort_manifest_reader *r);

#endif
