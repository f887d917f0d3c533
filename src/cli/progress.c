/* The progress line: done/total, rate and ETA on stderr (see progress.h for when). */
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 30
#define MIN_BAR_WIDTH 5
#define AUTO_DELAY_S 2.0
#define TERMINAL_REDRAW_S 0.1
#define LOG_LINE_EVERY_S 10.0

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void format_duration(double seconds, char *out, size_t size) {
    long s = seconds < 0 ? 0 : seconds > 359999 ? 359999 : (long)(seconds + 0.5);
    if (s >= 3600) snprintf(out, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(out, size, "%ld:%02ld", s / 60, s % 60);
}

/* Inputs counted ahead for the ETA; -1 when they stream from stdin. */
static long count_inputs(char **paths, int count, const engine_options *o) {
    for (int i = 0; i < count; i++)
        if (strcmp(paths[i], "-") == 0) return -1;
    input_source *src = input_source_new(paths, count, o);
    if (!src) return -1;
    long n = 0;
    input_item item;
    while (input_source_next(src, &item)) n++;
    input_source_free(src);
    return n;
}

void progress_start(progress_bar *p, const engine_options *o, char **paths, int num_paths) {
    memset(p, 0, sizeof *p);
    p->terminal = isatty(STDERR_FILENO);
    p->shared = p->terminal && isatty(STDOUT_FILENO);
    p->on = o->progress == PROGRESS_ALWAYS || (o->progress == PROGRESS_AUTO && p->terminal && !o->quiet);
    p->waiting = o->progress == PROGRESS_AUTO;
    p->total = p->on ? count_inputs(paths, num_paths, o) : -1;
    p->start = p->last_draw = now_seconds();
}

/* "12/84 images  31 img/s  ETA 0:02", "12 images  31 img/s  0:00 so far" without a
 * total; at the end "84/84 images  31 img/s  in 0:03". */
static int format_counts(const progress_bar *p, double now, bool final, char *out, size_t size) {
    double elapsed = now - p->start, rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char total[32] = "", time_text[64], duration[48];
    if (p->total >= 0) snprintf(total, sizeof total, "/%ld", p->total);
    if (final || p->total < 0) {
        format_duration(elapsed, duration, sizeof duration);
        snprintf(time_text, sizeof time_text, final ? "in %s" : "%s so far", duration);
    } else if (rate > 0) {
        format_duration((double)(p->total > p->done ? p->total - p->done : 0) / rate, duration, sizeof duration);
        snprintf(time_text, sizeof time_text, "ETA %s", duration);
    } else {
        snprintf(time_text, sizeof time_text, "ETA --:--");
    }
    return snprintf(out, size, "%ld%s images  %.*f img/s  %s", p->done, total, rate < 10 ? 1 : 0, rate, time_text);
}

/* "[=====>     ] " sized to fit the terminal, or "" when there is no total or no room. */
static void format_bar(const progress_bar *p, int room, char *out, size_t size) {
    int width = room - 3 < BAR_WIDTH ? room - 3 : BAR_WIDTH;
    out[0] = '\0';
    if (p->total <= 0 || width < MIN_BAR_WIDTH || (size_t)width + 4 > size) return;
    long done = p->done < p->total ? p->done : p->total;
    int filled = (int)(width * done / p->total);
    out[0] = '[';
    for (int i = 0; i < width; i++) out[1 + i] = i < filled ? '=' : i == filled ? '>' : ' ';
    memcpy(out + 1 + width, "] ", 3);
}

static int terminal_columns(void) {
    struct winsize ws;
    return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

static void draw(progress_bar *p, double now, bool final) {
    char counts[160], bar[BAR_WIDTH + 4], line[sizeof counts + sizeof bar];
    int len = format_counts(p, now, final, counts, sizeof counts);
    if (!p->terminal) {
        fprintf(stderr, "emote: %s\n", counts);
    } else {
        int columns = terminal_columns() - 1; /* writing the last column wraps on some terminals */
        format_bar(p, columns - len, bar, sizeof bar);
        int shown = snprintf(line, sizeof line, "%s%s", bar, counts);
        if (shown > columns) shown = columns > 0 ? columns : 0;
        fprintf(stderr, "\r%.*s%*s", shown, line, p->width > shown ? p->width - shown : 0, "");
        p->width = shown;
    }
    fflush(stderr);
    p->last_draw = now;
}

void progress_tick(progress_bar *p) {
    p->done++;
    if (!p->on) return;
    double now = now_seconds();
    if (p->waiting && now - p->start < AUTO_DELAY_S) return;
    p->waiting = false;
    bool due = p->terminal ? p->width == 0 || now - p->last_draw >= TERMINAL_REDRAW_S
                           : now - p->last_draw >= LOG_LINE_EVERY_S;
    if (due) draw(p, now, false);
}

void progress_clear(progress_bar *p) {
    if (p->width == 0) return;
    fprintf(stderr, "\r%*s\r", p->width, "");
    fflush(stderr);
    p->width = 0;
}

void progress_before_stdout(progress_bar *p) {
    if (p->shared) progress_clear(p);
}

void progress_finish(progress_bar *p) {
    if (p->terminal) progress_clear(p);
    else if (p->on && !p->waiting) draw(p, now_seconds(), true);
    p->on = false;
}
