/* Confusion-matrix pictures for `emote eval --plot`. */
#ifndef EMOTE_PLOT_H
#define EMOTE_PLOT_H

#include <stdbool.h>

#include "emote.h"
#include "metrics.h"

/* True when path ends in .png or .svg (case-insensitive). */
bool plot_format_supported(const char *path);
/* Draws the row-normalised confusion matrix with counts, labels and accuracy to path
 * (written to a temporary file, then renamed). Prints the error and returns false on failure. */
bool plot_confusion(const char *path, const confusion_matrix *m, const emote_model *model);

#endif
