/* The progress line on stderr shared by classify, eval and sort.
 *
 * engine_options.progress decides when it shows: PROGRESS_AUTO on a terminal (stderr) and
 * not under -q, from the moment a run passes 2 s; PROGRESS_ALWAYS without that wait,
 * also off a terminal and under -q; PROGRESS_NEVER not at all. On a terminal one line is
 * redrawn in place (at most 10 times a second) and erased at the end; off a terminal a
 * full line is written every 10 s and once at the end, so that a log file stays readable. */
#ifndef EMOTE_PROGRESS_H
#define EMOTE_PROGRESS_H

#include <stdbool.h>

#include "cli.h"

typedef struct {
    bool on;       /* drawing at all */
    bool terminal; /* stderr is a terminal: redraw in place */
    bool shared;   /* stdout is a terminal too: records would land on the bar's line */
    bool waiting;  /* auto mode: nothing drawn before the run passes 2 s */
    long total;    /* inputs counted ahead; -1 when unknown (paths from stdin) */
    long done;
    double start, last_draw;
    int width; /* characters on the terminal line now; 0 when nothing is drawn */
} progress_bar;

/* Decides whether to show progress for a run over these inputs (o->progress, o->quiet,
 * isatty(stderr)) and, if so, counts them ahead unless they stream from stdin. */
void progress_start(progress_bar *p, const engine_options *o, char **paths, int num_paths);
/* One more input done; redraws when due. */
void progress_tick(progress_bar *p);
/* Erases the line, before something else is written to the terminal; the next tick
 * draws it again. */
void progress_clear(progress_bar *p);
/* Erases the line when stdout is a terminal: call before writing a record. */
void progress_before_stdout(progress_bar *p);
/* The run is over: erases the line on a terminal, writes the final count off one. */
void progress_finish(progress_bar *p);

#endif
