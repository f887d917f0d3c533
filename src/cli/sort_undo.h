/* emote sort --undo MANIFEST (sort_undo.c). */
#ifndef EMOTE_SORT_UNDO_H
#define EMOTE_SORT_UNDO_H

#include <stdbool.h>

/* Undoes what the sort that wrote the manifest did; returns the exit status. */
int sort_undo(const char *manifest_path, bool quiet);

#endif
