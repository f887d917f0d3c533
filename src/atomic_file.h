/* The one place that writes files safely (DESIGN.md): whole files appear complete or not at
 * all, and append-only files (manifests, logs) keep every row written before a kill.
 *
 * Whole files are written to a hidden temporary file beside their name
 * (DIR/.NAME.emote-tmp.XXXXXX), synced, and then take their name: replacing what is there,
 * or only while the name is free (no-clobber, for files a user may already have). A killed
 * writer leaves at most such a temporary file; atomic_remove_stale_temps clears old ones.
 *
 * Append-only files are written with write(2) row by row (a kill -9 loses nothing written)
 * and synced at intervals and when closed (a power cut loses at most the last second). */
#ifndef EMOTE_ATOMIC_FILE_H
#define EMOTE_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "emote.h"

#define ATOMIC_TEMP_MARK ".emote-tmp."

typedef struct {
    FILE *f;         /* the contents go here; NULL once finished */
    char *temp_path; /* owned; NULL when there is no temporary file (none made, or published) */
} atomic_file;

/* Starts a file for folder dir, its temporary name made from name; mode 0666 less the umask
 * (callers may fchmod(fileno(a->f), ...) before finishing). */
emote_status atomic_file_begin(atomic_file *a, const char *dir, const char *name, emote_error *err);
/* The same for the file that will be called path. */
emote_status atomic_file_begin_for(atomic_file *a, const char *path, emote_error *err);
/* Flushes, syncs and closes the contents; the temporary file waits to be published. */
emote_status atomic_file_finish(atomic_file *a, emote_error *err);

typedef enum { ATOMIC_PUBLISHED, ATOMIC_NAME_TAKEN, ATOMIC_FAILED } atomic_publish_status;

/* Gives the finished file the name path: replacing what is there (replace), or only while
 * path is free; on ATOMIC_NAME_TAKEN the temporary file stays for another name. */
atomic_publish_status atomic_file_publish(atomic_file *a, const char *path, bool replace, emote_error *err);
/* Removes the temporary file if it is still there and frees everything. */
void atomic_file_discard(atomic_file *a);

/* Copies the open file in (called in_name in messages) into the file; with keep (the
 * source's stat) also its permissions, less umask_bits, and its modification time, as cp -p. */
emote_status atomic_file_copy_from(atomic_file *a, int in, const char *in_name, const struct stat *keep,
                                   mode_t umask_bits, emote_error *err);

/* Whether both files hold the same bytes, or path holds exactly data[0..size). A file that
 * cannot be read counts as different: a caller then picks another name, which loses nothing. */
bool files_hold_same_bytes(const char *a, const char *b);
bool file_holds_bytes(const char *path, const void *data, size_t size);

/* Renames from to `to` unless `to` exists (ATOMIC_NAME_TAKEN); from is gone on success. On
 * failure *err_no holds the reason (EXDEV: another filesystem). */
atomic_publish_status rename_no_clobber(const char *from, const char *to, int *err_no, emote_error *err);
/* fsync on a folder, so that names created in it survive a power cut. */
emote_status sync_folder(const char *dir, emote_error *err);
/* fsync on the folder that holds path. */
emote_status sync_folder_of(const char *path, emote_error *err);
/* Removes the temporary files in dir older than max_age_seconds; returns how many, and
 * prints a warning per file that cannot be removed unless quiet. */
long atomic_remove_stale_temps(const char *dir, long max_age_seconds, bool quiet);
/* Removes the temporary files that atomic_file_begin_for(path) makes (regular files only, of
 * any age: for a caller that holds a lock on path, so that no writer of them is alive); returns
 * how many. None when path's name is longer than temporary names keep (other names could then
 * share them). */
int atomic_remove_temps_of(const char *path);

/* The whole file path = data[0..size), through atomic_file (begin, write, finish, publish)
 * and a synced folder; replace: an existing path is replaced, else EMOTE_ERR_IO "PATH:
 * exists". Nothing is left behind on failure. */
emote_status write_file_atomically(const char *path, const void *data, size_t size, bool replace, emote_error *err);

typedef struct {
    int fd;             /* -1 when closed */
    char *path;         /* owned */
    struct timespec last_sync;
    bool unsynced;
} append_file;

/* Creates path for appending, starting with header (may be ""): only if the name is free,
 * or (replace) replacing what is there by an atomic rename, never writing through it. */
emote_status append_file_create(append_file *l, const char *path, bool replace, const char *header,
                                emote_error *err);
/* Appends size bytes with write(2); syncs when the last sync is a second old. */
emote_status append_file_write(append_file *l, const void *data, size_t size, emote_error *err);
/* Syncs and closes (also after a failed write, to free it). */
emote_status append_file_close(append_file *l, emote_error *err);

#endif
