/* Input enumeration: arguments, recursive directory walks and paths read from stdin. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"
#include "string_table.h"
#include "util.h"

#define MAX_DEPTH 128

typedef struct {
    char *dir;
    char **names; /* sorted */
    size_t count, next;
} dir_frame;

struct input_source {
    char **args;
    int num_args, next_arg;
    bool reading_stdin;
    int delimiter;
    char *line;
    size_t line_cap;
    dir_frame stack[MAX_DEPTH];
    int depth;
    char *current;
    char error[512];
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
    src->delimiter = o->nul_separated ? '\0' : '\n';
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
    free(src->line);
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
        snprintf(src->error, sizeof src->error, "%s: directories nested deeper than %d levels", dir, MAX_DEPTH);
        return false;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(src->error, sizeof src->error, "%s: cannot read directory: %s", dir, strerror(errno));
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
        snprintf(src->error, sizeof src->error, "%s: out of memory listing the directory", dir);
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

/* Next path from stdin, or NULL at its end. Empty lines are skipped. */
static char *next_stdin_path(input_source *src) {
    for (;;) {
        ssize_t n = getdelim(&src->line, &src->line_cap, src->delimiter, stdin);
        if (n < 0) return NULL;
        if (n > 0 && src->line[n - 1] == src->delimiter) src->line[--n] = '\0';
        if (src->delimiter == '\n' && n > 0 && src->line[n - 1] == '\r') src->line[--n] = '\0';
        if (n > 0) return src->line;
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
            if (!(arg = next_stdin_path(src))) src->reading_stdin = false;
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

bool input_source_next(input_source *src, input_item *item) {
    while (next_candidate(src, item)) {
        if (src->shard_count == 0 || hash_string(item->path) % (uint64_t)src->shard_count == (uint64_t)(src->shard_index - 1))
            return true;
    }
    return false;
}
