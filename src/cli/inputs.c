/* Input enumeration: arguments, recursive directory walks and paths read from stdin. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"
#include "line_reader.h"
#include "string_table.h"
#include "util.h"

#define MAX_DEPTH 128
/* Longest path accepted on stdin, in bytes (Linux's PATH_MAX, terminator excluded). */
#define STDIN_PATH_MAX 4096

typedef struct {
    char *dir;
    char **names; /* sorted */
    size_t count, next;
} dir_frame;

struct input_source {
    char **args;
    int num_args, next_arg;
    bool reading_stdin;
    line_reader paths; /* stdin */
    dir_frame stack[MAX_DEPTH];
    int depth;
    char *current;
    char error[EMOTE_ERROR_MAX];
    int shard_index, shard_count;
    bool stdin_image; /* "-" is an image on stdin, not a list of paths */
};

static const char *const image_extensions[] = {"png", "jpg", "jpeg", "jpe", "bmp", "gif", "pgm", "ppm",
                                               "pnm"};

bool has_image_extension(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return false;
    for (size_t i = 0; i < sizeof image_extensions / sizeof image_extensions[0]; i++)
        if (strcasecmp(dot + 1, image_extensions[i]) == 0) return true;
    return false;
}

input_source *input_source_new(char **paths, int count, const engine_options *o) {
    input_source *src = calloc(1, sizeof *src);
    if (!src) return NULL;
    src->args = paths;
    src->num_args = count;
    line_reader_init(&src->paths, stdin, o->nul_separated ? '\0' : '\n', STDIN_PATH_MAX);
    src->shard_index = o->shard_index;
    src->shard_count = o->shard_count;
    src->stdin_image = o->stdin_image;
    return src;
}

static void pop_frame(input_source *src) {
    dir_frame *f = &src->stack[--src->depth];
    for (size_t i = 0; i < f->count; i++) free(f->names[i]);
    free(f->names);
    free(f->dir);
}

void input_source_free(input_source *src) {
    if (!src) return;
    while (src->depth > 0) pop_frame(src);
    line_reader_free(&src->paths);
    free(src->current);
    free(src);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *join_path(const char *dir, const char *name) {
    size_t dl = strlen(dir), nl = strlen(name);
    bool slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + slash + nl + 1);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (slash) p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

/* Reads a directory's entry names, sorted; sets src->error on failure. */
static bool push_directory(input_source *src, const char *dir) {
    if (src->depth == MAX_DEPTH) {
        format_message(src->error, sizeof src->error, "%s: directories nested deeper than %d levels", dir, MAX_DEPTH);
        return false;
    }
    DIR *d = opendir(dir);
    if (!d) {
        format_message(src->error, sizeof src->error, "%s: cannot read directory: %s", dir, strerror(errno));
        return false;
    }
    dir_frame f = {str_dup(dir), NULL, 0, 0};
    size_t cap = 0;
    bool ok = f.dir != NULL;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (f.count == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(f.names, cap * sizeof *grown);
            if (!grown) ok = false;
            else f.names = grown;
        }
        if (ok && !(f.names[f.count++] = str_dup(e->d_name))) ok = false;
    }
    closedir(d);
    if (!ok) {
        format_message(src->error, sizeof src->error, "%s: out of memory listing the directory", dir);
        src->stack[src->depth++] = f;
        pop_frame(src);
        return false;
    }
    if (f.count) qsort(f.names, f.count, sizeof *f.names, compare_names);
    src->stack[src->depth++] = f;
    return true;
}

static bool is_directory(const char *path, bool follow_links) {
    struct stat st;
    return (follow_links ? stat(path, &st) : lstat(path, &st)) == 0 && S_ISDIR(st.st_mode);
}

/* Next path from stdin, or NULL at its end. Empty lines are skipped; an empty NUL-ended
 * record, a path longer than STDIN_PATH_MAX, a NUL inside a line or a read error sets
 * src->error and ends the list (what follows cannot be trusted to be paths). */
static const char *next_stdin_path(input_source *src, bool *failed) {
    line_reader *r = &src->paths;
    bool nul = r->delimiter == '\0';
    const char *unit = nul ? "record" : "line";
    for (;;) {
        line_status status = line_reader_next(r);
        const char *problem = NULL;
        if (status == LINE_END) return NULL;
        if (status == LINE_TOO_LONG) problem = "path longer than " STRINGIFY(STDIN_PATH_MAX) " bytes";
        else if (status == LINE_NO_MEMORY) problem = "out of memory";
        else if (status == LINE_READ_ERROR) {
            snprintf(src->error, sizeof src->error, "<stdin>: read error after %s %ld: %s", unit, r->number,
                     strerror(errno ? errno : EIO));
            *failed = true;
            return NULL;
        } else if (!nul && r->length > 0 && r->line[r->length - 1] == '\r') r->line[--r->length] = '\0';
        if (!problem && strlen(r->line) != r->length) problem = "path contains a NUL byte";
        if (!problem && nul && r->length == 0) problem = "empty path";
        if (problem) {
            snprintf(src->error, sizeof src->error, "<stdin>: %s %ld: %s", unit, r->number, problem);
            *failed = true;
            return NULL;
        }
        if (r->length > 0) return r->line;
    }
}

/* Sets src->current to the next candidate path, before sharding. */
static bool next_candidate(input_source *src, input_item *item) {
    item->error = NULL;
    for (;;) {
        free(src->current);
        src->current = NULL;
        if (src->depth > 0) {
            dir_frame *f = &src->stack[src->depth - 1];
            if (f->next == f->count) {
                pop_frame(src);
                continue;
            }
            src->current = join_path(f->dir, f->names[f->next++]);
            if (!src->current) continue;
            /* Like find(1): symlinked files are inputs, symlinked directories are not walked. */
            if (is_directory(src->current, false)) {
                if (!push_directory(src, src->current)) break;
                continue;
            }
            if (!has_image_extension(src->current)) continue;
            item->path = src->current;
            return true;
        }
        const char *arg = NULL;
        if (src->reading_stdin) {
            bool failed = false;
            if (!(arg = next_stdin_path(src, &failed))) src->reading_stdin = false;
            if (failed) {
                item->path = "-";
                item->error = src->error;
                return true;
            }
        }
        if (!arg) {
            if (src->next_arg == src->num_args) return false;
            arg = src->args[src->next_arg++];
            if (strcmp(arg, "-") == 0 && !src->stdin_image) {
                src->reading_stdin = true;
                continue;
            }
        }
        if (!(src->current = str_dup(arg))) continue;
        if (is_directory(arg, true)) {
            if (!push_directory(src, arg)) break;
            continue;
        }
        item->path = src->current;
        return true;
    }
    item->path = src->current ? src->current : "?";
    item->error = src->error;
    return true;
}

bool input_source_would_wait(const input_source *src) {
    bool stdin_next = src->reading_stdin || (src->depth == 0 && src->next_arg < src->num_args &&
                                             strcmp(src->args[src->next_arg], "-") == 0 && !src->stdin_image);
    return src->depth == 0 && stdin_next && line_reader_would_wait(&src->paths);
}

bool input_source_next(input_source *src, input_item *item) {
    while (next_candidate(src, item)) {
        if (src->shard_count == 0 || hash_string(item->path) % (uint64_t)src->shard_count == (uint64_t)(src->shard_index - 1))
            return true;
    }
    return false;
}
