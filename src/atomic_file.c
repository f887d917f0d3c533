#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static bool write_all(int fd, const unsigned char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= (size_t)n;
    }
    return true;
}

/* Syncs the folder that holds path, so that the new name survives a power cut; a file system
 * that cannot sync folders is not an error. */
static void sync_folder_of(const char *path) {
    char *copy = str_dup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

/* The temporary file's contents, synced; false with errno set. */
static bool fill_temp(int fd, const void *data, size_t size) {
    mode_t mask = umask(0); /* mkstemp makes 0600: give the file the usual mode */
    umask(mask);
    return fchmod(fd, 0666 & ~mask) == 0 && write_all(fd, data, size) && fsync(fd) == 0;
}

/* Moves temp to path: rename (replacing) or link + unlink (failing when path exists). */
static bool put_in_place(const char *temp, const char *path, bool replace) {
    if (replace) return rename(temp, path) == 0;
    if (link(temp, path) != 0) return false;
    unlink(temp);
    return true;
}

emote_status write_file_atomically(const char *path, const void *data, size_t size, bool replace, emote_error *err) {
    size_t need = strlen(path) + sizeof ".emote-tmp.XXXXXX";
    char *temp = malloc(need);
    if (!temp) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", path);
    snprintf(temp, need, "%s.emote-tmp.XXXXXX", path);
    int fd = mkstemp(temp);
    if (fd < 0) {
        emote_status s = emote_fail(err, EMOTE_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                                    strerror(errno));
        free(temp);
        return s;
    }
    bool written = fill_temp(fd, data, size);
    int error = errno;
    if (close(fd) != 0 && written) {
        written = false;
        error = errno;
    }
    bool placed = written && put_in_place(temp, path, replace);
    if (written && !placed) error = errno;
    emote_status s = EMOTE_OK;
    if (!placed) {
        unlink(temp);
        s = error == EEXIST ? emote_fail(err, EMOTE_ERR_IO, "%s: exists", path)
                            : emote_fail(err, EMOTE_ERR_IO, "%s: cannot write: %s", path, strerror(error ? error : EIO));
    } else {
        sync_folder_of(path);
    }
    free(temp);
    return s;
}
