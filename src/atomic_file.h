/* Writing a whole file so that a reader finds the old file or the complete new one, never a
 * part: a temporary file in the same folder, written, synced, then renamed over the target
 * (or linked to it, which fails when the target exists), and the folder synced. */
#ifndef EMOTE_ATOMIC_FILE_H
#define EMOTE_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "emote.h"

/* Writes size bytes to path; replace: an existing path is replaced, else EMOTE_ERR_IO
 * ("exists"). The new file gets mode 0666 less the umask. Nothing is left behind on failure. */
emote_status write_file_atomically(const char *path, const void *data, size_t size, bool replace, emote_error *err);

#endif
