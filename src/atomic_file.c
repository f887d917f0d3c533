/* Whole files through a temporary file and a rename; append-only files synced at intervals. */
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define SYNC_INTERVAL_NS 1000000000L
#define TEMP_NAME_KEPT 200 /* bytes of a file's name that its temporary name keeps */
#define TEMP_SUFFIX 6      /* mkostemp's XXXXXX */

static mode_t current_umask(void) {
    mode_t mask = umask(0);
    umask(mask);
    return mask;
}

/* Creates DIR/.NAME.emote-tmp.XXXXXX with mode 0666 less the umask: *fd and *temp_path. */
static emote_status create_temp(const char *dir, const char *name, char **temp_path, int *fd, emote_error *err) {
    size_t len = strlen(dir);
    char *path;
    if (asprintf(&path, "%s%s.%.*s" ATOMIC_TEMP_MARK "XXXXXX", dir, len && dir[len - 1] != '/' ? "/" : "", TEMP_NAME_KEPT,
                 name) < 0)
        return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", dir);
    *fd = mkostemp(path, O_CLOEXEC);
    if (*fd < 0 || fchmod(*fd, 0666 & ~current_umask()) != 0) {
        emote_status s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot create a file there: %s", dir, strerror(errno));
        if (*fd >= 0) {
            close(*fd);
            unlink(path);
        }
        free(path);
        *fd = -1;
        return s;
    }
    *temp_path = path;
    return EMOTE_OK;
}

emote_status atomic_file_begin(atomic_file *a, const char *dir, const char *name, emote_error *err) {
    a->f = NULL;
    a->temp_path = NULL;
    int fd;
    emote_status s = create_temp(dir, name, &a->temp_path, &fd, err);
    if (s) return s;
    if (!(a->f = fdopen(fd, "wb"))) {
        close(fd);
        s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", a->temp_path);
        atomic_file_discard(a);
        return s;
    }
    return EMOTE_OK;
}

emote_status atomic_file_begin_for(atomic_file *a, const char *path, emote_error *err) {
    char *dir = path_folder(path);
    if (!dir) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
    emote_status s = atomic_file_begin(a, dir, path_base_name(path), err);
    free(dir);
    return s;
}

emote_status atomic_file_finish(atomic_file *a, emote_error *err) {
    FILE *f = a->f;
    a->f = NULL;
    errno = 0;
    bool ok = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
    int error = errno ? errno : EIO;
    if (fclose(f) != 0 && ok) {
        ok = false;
        error = errno;
    }
    if (ok) return EMOTE_OK;
    return emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", a->temp_path, strerror(error));
}

emote_status atomic_file_copy_from(atomic_file *a, int in, const char *in_name, const struct stat *keep,
                                   mode_t umask_bits, emote_error *err) {
    char buffer[1 << 16];
    for (;;) {
        ssize_t n = read(in, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return emote_fail(err, EMOTE_ERR_IO, "%s: cannot read: %s", in_name, strerror(errno));
        if (n == 0) break;
        if (fwrite(buffer, 1, (size_t)n, a->f) != (size_t)n)
            return emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", a->temp_path, strerror(errno));
    }
    if (!keep) return EMOTE_OK;
    const struct timespec times[2] = {keep->st_atim, keep->st_mtim};
    if (fchmod(fileno(a->f), keep->st_mode & 0777 & ~umask_bits) != 0 || futimens(fileno(a->f), times) != 0)
        return emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", a->temp_path, strerror(errno));
    return EMOTE_OK;
}

static ssize_t read_full(int fd, char *buffer, size_t size) {
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buffer + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

bool files_hold_same_bytes(const char *a, const char *b) {
    int fa = open(a, O_RDONLY | O_CLOEXEC | O_NONBLOCK), fb = open(b, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat sa, sb;
    bool same = fa >= 0 && fb >= 0 && fstat(fa, &sa) == 0 && fstat(fb, &sb) == 0 && S_ISREG(sa.st_mode) &&
                S_ISREG(sb.st_mode) && sa.st_size == sb.st_size;
    char x[32768], y[32768];
    while (same) {
        ssize_t na = read_full(fa, x, sizeof x), nb = read_full(fb, y, sizeof y);
        same = na >= 0 && na == nb && memcmp(x, y, (size_t)na) == 0;
        if (na <= 0) break;
    }
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    return same;
}

bool file_holds_bytes(const char *path, const void *data, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    bool same = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == size;
    char x[32768];
    for (size_t at = 0; same && at < size;) {
        ssize_t n = read_full(fd, x, sizeof x);
        same = n > 0 && (size_t)n <= size - at && memcmp(x, (const char *)data + at, (size_t)n) == 0;
        at += n > 0 ? (size_t)n : 0;
    }
    if (fd >= 0) close(fd);
    return same;
}

atomic_publish_status rename_no_clobber(const char *from, const char *to, int *err_no, emote_error *err) {
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return ATOMIC_PUBLISHED;
    if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) { /* no RENAME_NOREPLACE here */
        if (link(from, to) == 0) {
            if (unlink(from) == 0) return ATOMIC_PUBLISHED;
            *err_no = errno;
            emote_fail(err, EMOTE_ERR_IO, "%s is in place but %s cannot be removed: %s", to, from, strerror(errno));
            return ATOMIC_FAILED;
        }
    }
    if (errno == EEXIST) return ATOMIC_NAME_TAKEN;
    *err_no = errno;
    emote_fail(err, EMOTE_ERR_IO, "%s: cannot create: %s", to, strerror(errno));
    return ATOMIC_FAILED;
}

atomic_publish_status atomic_file_publish(atomic_file *a, const char *path, bool replace, emote_error *err) {
    atomic_publish_status s = ATOMIC_PUBLISHED;
    int err_no = 0;
    if (!replace) s = rename_no_clobber(a->temp_path, path, &err_no, err);
    else if (rename(a->temp_path, path) != 0) {
        emote_fail(err, EMOTE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        s = ATOMIC_FAILED;
    }
    if (s == ATOMIC_PUBLISHED) {
        free(a->temp_path);
        a->temp_path = NULL;
    }
    return s;
}

void atomic_file_discard(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->temp_path) unlink(a->temp_path);
    free(a->temp_path);
    a->f = NULL;
    a->temp_path = NULL;
}

emote_status sync_folder(const char *dir, emote_error *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return emote_fail(err, EMOTE_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    bool ok = fsync(fd) == 0 || errno == EINVAL; /* some filesystems cannot sync folders */
    int error = errno;
    close(fd);
    return ok ? EMOTE_OK : emote_fail(err, EMOTE_ERR_IO, "%s: cannot sync folder: %s", dir, strerror(error));
}

emote_status sync_folder_of(const char *path, emote_error *err) {
    char *dir = path_folder(path);
    emote_status s = dir ? sync_folder(dir, err) : emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
    free(dir);
    return s;
}

long atomic_remove_stale_temps(const char *dir, long max_age_seconds, bool quiet) {
    DIR *d = opendir(dir);
    if (!d) {
        if (!quiet) fprintf(stderr, "emote: warning: cannot read folder %s: %s\n", dir, strerror(errno));
        return 0;
    }
    long removed = 0;
    time_t now = time(NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] != '.' || !strstr(e->d_name, ATOMIC_TEMP_MARK)) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime <= max_age_seconds)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
        else if (!quiet)
            fprintf(stderr, "emote: warning: cannot remove stale temporary file %s/%s: %s\n", dir, e->d_name,
                    strerror(errno));
    }
    closedir(d);
    return removed;
}

/* Whether entry is .NAME.emote-tmp.XXXXXX for name. */
static bool is_temp_of(const char *entry, const char *name) {
    size_t n = strlen(name), mark = strlen(ATOMIC_TEMP_MARK);
    return entry[0] == '.' && strncmp(entry + 1, name, n) == 0 && strncmp(entry + 1 + n, ATOMIC_TEMP_MARK, mark) == 0 &&
           strlen(entry + 1 + n + mark) == TEMP_SUFFIX;
}

int atomic_remove_temps_of(const char *path) {
    const char *name = path_base_name(path);
    char *dir = strlen(name) <= TEMP_NAME_KEPT ? path_folder(path) : NULL;
    DIR *d = dir ? opendir(dir) : NULL;
    int removed = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        if (is_temp_of(e->d_name, name) && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    if (d) closedir(d);
    free(dir);
    return removed;
}

/* ---- append-only files ---------------------------------------------------------------- */

static bool write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            return false;
        }
        data += n;
        size -= (size_t)n;
    }
    return true;
}

static emote_status append_sync(append_file *l, emote_error *err) {
    clock_gettime(CLOCK_MONOTONIC, &l->last_sync);
    l->unsynced = false;
    if (fsync(l->fd) == 0) return EMOTE_OK;
    return emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", l->path, strerror(errno));
}

/* Replaces path by a new file holding header (renamed over it): *fd. */
static emote_status create_replacing(const char *path, const char *header, int *fd, emote_error *err) {
    char *dir = path_folder(path), *temp = NULL;
    if (!dir) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
    emote_status s = create_temp(dir, path_base_name(path), &temp, fd, err);
    free(dir);
    if (s) return s;
    if (!write_all(*fd, header, strlen(header)) || rename(temp, path) != 0) {
        s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        close(*fd);
        unlink(temp);
        *fd = -1;
    }
    free(temp);
    return s;
}

/* Creates path holding header, only if the name is free: *fd. */
static emote_status create_exclusive(const char *path, const char *header, int *fd, emote_error *err) {
    *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (*fd < 0) return emote_fail(err, EMOTE_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (write_all(*fd, header, strlen(header))) return EMOTE_OK;
    emote_status s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    close(*fd);
    unlink(path);
    *fd = -1;
    return s;
}

emote_status append_file_create(append_file *l, const char *path, bool replace, const char *header,
                                emote_error *err) {
    memset(l, 0, sizeof *l);
    l->fd = -1;
    if (!(l->path = str_dup(path))) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
    emote_status s = replace ? create_replacing(path, header, &l->fd, err) : create_exclusive(path, header, &l->fd, err);
    if (!s) s = append_sync(l, err);
    if (!s) s = sync_folder_of(path, err);
    if (s) {
        if (l->fd >= 0) close(l->fd);
        l->fd = -1;
        free(l->path);
        l->path = NULL;
    }
    return s;
}

emote_status append_file_write(append_file *l, const void *data, size_t size, emote_error *err) {
    if (!write_all(l->fd, data, size))
        return emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", l->path, strerror(errno));
    l->unsynced = true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (long)(now.tv_sec - l->last_sync.tv_sec) * 1000000000L + (now.tv_nsec - l->last_sync.tv_nsec);
    return elapsed >= SYNC_INTERVAL_NS ? append_sync(l, err) : EMOTE_OK;
}

emote_status append_file_close(append_file *l, emote_error *err) {
    emote_status s = EMOTE_OK;
    if (l->fd >= 0) {
        if (l->unsynced) s = append_sync(l, err);
        if (close(l->fd) != 0 && !s) s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", l->path, strerror(errno));
    }
    l->fd = -1;
    free(l->path);
    l->path = NULL;
    return s;
}

emote_status write_file_atomically(const char *path, const void *data, size_t size, bool replace, emote_error *err) {
    atomic_file a = {0};
    emote_status s = atomic_file_begin_for(&a, path, err);
    if (!s && size > 0 && fwrite(data, 1, size, a.f) != size)
        s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", path, strerror(errno ? errno : EIO));
    if (!s) s = atomic_file_finish(&a, err);
    if (!s) {
        atomic_publish_status p = atomic_file_publish(&a, path, replace, err);
        if (p == ATOMIC_NAME_TAKEN) s = emote_fail(err, EMOTE_ERR_IO, "%s: exists", path);
        else if (p == ATOMIC_FAILED) s = EMOTE_ERR_IO;
    }
    if (!s) s = sync_folder_of(path, err);
    atomic_file_discard(&a);
    return s;
}
