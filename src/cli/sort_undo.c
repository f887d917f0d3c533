/* emote sort --undo MANIFEST: puts back what a sort did, finished or killed, from its
 * manifest. Moved files go back to their source (never over a file there); copies, hard
 * links and symlinks are removed while they still are what the sort made; an original that
 * --move removed because it was already sorted is copied back. Each row is
 * judged by what is on disk, so undoing twice, or a row whose file was never placed, does
 * nothing. The whole manifest is checked before anything is touched. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "sort_manifest.h"
#include "sort_undo.h"
#include "util.h"

typedef struct {
    long moved_back, removed, restored, failed;
    mode_t umask_bits;
} undo_state;

typedef struct {
    char *source, *destination;
    sort_action action;
} undo_row;

static void undo_failed(undo_state *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void undo_failed(undo_state *u, const char *fmt, ...) {
    char message[EMOTE_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    format_message_v(message, sizeof message, fmt, ap);
    va_end(ap);
    print_error(message);
    u->failed++;
}

/* Copies from to `to` (a name that must stay free), synced; then removes from (a move back
 * across filesystems) unless keep_from. */
static bool copy_back(const char *from, const char *to, bool keep_from, mode_t umask_bits, emote_error *err) {
    struct stat st;
    int in = open_regular_file(from, &st, err);
    if (in < 0) return false;
    char *dir = path_folder(to);
    atomic_file a = {0};
    bool ok = dir && !atomic_file_begin(&a, dir, path_base_name(to), err) &&
              !atomic_file_copy_from(&a, in, from, &st, umask_bits, err) && !atomic_file_finish(&a, err);
    close(in);
    if (ok) {
        atomic_publish_status p = atomic_file_publish(&a, to, false, err);
        if (p == ATOMIC_NAME_TAKEN) emote_fail(err, EMOTE_ERR_IO, "%s: appeared meanwhile; left %s", to, from);
        ok = p == ATOMIC_PUBLISHED && !sync_folder(dir, err);
    }
    if (ok && !keep_from && unlink(from) != 0)
        ok = !emote_fail(err, EMOTE_ERR_IO, "%s: copied back to %s but cannot be removed: %s", from, to, strerror(errno));
    atomic_file_discard(&a);
    free(dir);
    return ok;
}

static void undo_move(undo_state *u, const undo_row *r) {
    struct stat src, dst;
    bool have_src = lstat(r->source, &src) == 0, have_dst = lstat(r->destination, &dst) == 0;
    if (!have_dst) {
        if (!have_src) undo_failed(u, "%s: missing, and so is %s", r->source, r->destination);
        return; /* never moved: the sort was stopped before */
    }
    if (have_src) {
        /* A move across filesystems killed before it removed the original: drop the copy. */
        if (files_hold_same_bytes(r->source, r->destination) && unlink(r->destination) == 0) u->moved_back++;
        else undo_failed(u, "%s: exists and differs from %s; left both", r->source, r->destination);
        return;
    }
    int err_no = 0;
    emote_error err;
    atomic_publish_status st = rename_no_clobber(r->destination, r->source, &err_no, &err);
    if (st == ATOMIC_NAME_TAKEN) undo_failed(u, "%s: appeared meanwhile; left %s", r->source, r->destination);
    else if (st == ATOMIC_PUBLISHED || (err_no == EXDEV && copy_back(r->destination, r->source, false, u->umask_bits, &err)))
        u->moved_back++;
    else undo_failed(u, "%s: cannot move back to %s: %s", r->destination, r->source, err.message);
}

/* Whether dest still is what the sort made of source by the action. */
static bool still_made_by_sort(const undo_row *r, const struct stat *dest) {
    struct stat src, target;
    if (stat(r->source, &src) != 0) return false;
    switch (r->action) {
    case SORT_ACTION_LINKED: return dest->st_dev == src.st_dev && dest->st_ino == src.st_ino;
    case SORT_ACTION_SYMLINKED:
        return S_ISLNK(dest->st_mode) && stat(r->destination, &target) == 0 && target.st_dev == src.st_dev &&
               target.st_ino == src.st_ino;
    default: return S_ISREG(dest->st_mode) && files_hold_same_bytes(r->source, r->destination);
    }
}

static void undo_copy(undo_state *u, const undo_row *r) {
    struct stat st;
    if (lstat(r->destination, &st) != 0) return; /* never made, or removed already */
    if (!still_made_by_sort(r, &st))
        undo_failed(u, "%s: no longer what the sort made of %s (changed, or the source is gone); left it",
                    r->destination, r->source);
    else if (unlink(r->destination) != 0) undo_failed(u, "%s: cannot remove: %s", r->destination, strerror(errno));
    else u->removed++;
}

/* sort --move removes an original that is already sorted: a copy of the sorted file puts it
 * back (the sorted one was there before and stays). */
static void undo_already_sorted(undo_state *u, const undo_row *r) {
    struct stat st;
    emote_error err;
    if (lstat(r->source, &st) == 0 || errno != ENOENT || lstat(r->destination, &st) != 0) return;
    if (copy_back(r->destination, r->source, true, u->umask_bits, &err)) u->restored++;
    else undo_failed(u, "%s: cannot restore from %s: %s", r->source, r->destination, err.message);
}

static void undo_one(undo_state *u, const undo_row *r) {
    switch (r->action) {
    case SORT_ACTION_MOVED: undo_move(u, r); break;
    case SORT_ACTION_COPIED:
    case SORT_ACTION_LINKED:
    case SORT_ACTION_SYMLINKED: undo_copy(u, r); break;
    case SORT_ACTION_ALREADY_SORTED: undo_already_sorted(u, r); break;
    default: break; /* failed: nothing was changed */
    }
}

static void row_free(undo_row *r) {
    free(r->source);
    free(r->destination);
    memset(r, 0, sizeof *r);
}

/* Reads every row; with u, undoes the last of each run of rows with the same source (the
 * earlier ones were superseded). Returns false on a bad manifest (the message printed). */
static bool walk_manifest(FILE *in, const char *path, undo_state *u) {
    sort_manifest_reader r;
    emote_error err;
    if (sort_manifest_open(&r, in, path, &err)) {
        print_error(err.message);
        sort_manifest_close(&r);
        return false;
    }
    undo_row pending = {0};
    sort_manifest_row row;
    manifest_read_status s;
    bool ok = true;
    while ((s = sort_manifest_next(&r, &row, &err)) == MANIFEST_ROW) {
        if (!u) continue;
        if (pending.source && strcmp(pending.source, row.source) != 0) undo_one(u, &pending);
        row_free(&pending);
        pending = (undo_row){str_dup(row.source), row.destination ? str_dup(row.destination) : NULL, row.action};
        if (!pending.source || (row.destination && !pending.destination)) {
            print_error("out of memory");
            ok = false;
            break;
        }
    }
    if (s == MANIFEST_BAD) {
        ok = false;
        print_error(err.message);
    } else if (s == MANIFEST_INCOMPLETE && !u) {
        fputs("emote: warning: ", stderr);
        text_write_escaped(stderr, err.message);
        fputs("; ignored: its file was not placed\n", stderr);
    }
    if (ok && u && pending.source) undo_one(u, &pending);
    row_free(&pending);
    sort_manifest_close(&r);
    return ok;
}

int sort_undo(const char *manifest_path, bool quiet) {
    emote_error err;
    FILE *in = fopen_regular_file(manifest_path, &err);
    if (!in) {
        print_error(err.message);
        return EXIT_FATAL;
    }
    undo_state u = {0};
    u.umask_bits = umask(0);
    umask(u.umask_bits);
    bool ok = walk_manifest(in, manifest_path, NULL); /* check it all before touching anything */
    if (ok) {
        rewind(in);
        ok = walk_manifest(in, manifest_path, &u);
    }
    fclose(in);
    if (!ok) return u.moved_back || u.removed || u.failed ? EXIT_SOME_FAILED : EXIT_FATAL;
    if (!quiet || u.failed) {
        fputs("undid ", stderr);
        text_write_escaped(stderr, manifest_path);
        fprintf(stderr, ": %ld moved back, %ld copies or links removed", u.moved_back, u.removed);
        if (u.restored) fprintf(stderr, ", %ld already-sorted originals restored", u.restored);
        if (u.failed) fprintf(stderr, "; %ld failed", u.failed);
        fputc('\n', stderr);
    }
    return u.failed ? EXIT_SOME_FAILED : EXIT_ALL_OK;
}
