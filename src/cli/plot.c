/* Confusion-matrix pictures: SVG text, or PNG rasterised here with a built-in 5x8 bitmap
 * font and written by stb_image_write. Both share one layout: title, axis titles, column
 * labels over the grid (turned upwards when wider than a cell), row labels to its left;
 * each cell shows its count and row percentage on a white-to-blue scale of the
 * row-normalised value. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "atomic_file.h"
#include "plot.h"
#include "util.h"

#define MAX_LABEL_CHARS 20   /* longer labels are cut, ending in ".." */
#define MAX_PNG_SIDE 16384   /* pixels */

bool plot_format_supported(const char *path) {
    size_t n = strlen(path);
    return n > 4 && (!strcasecmp(path + n - 4, ".png") || !strcasecmp(path + n - 4, ".svg"));
}

static bool is_png(const char *path) { return !strcasecmp(path + strlen(path) - 4, ".png"); }

/* ---- what to draw ------------------------------------------------------------------- */

typedef struct {
    const confusion_matrix *m;
    char (*labels)[MAX_LABEL_CHARS + 1]; /* cut to MAX_LABEL_CHARS */
    char title[128], subtitle[96];
    int cell_chars;  /* widest cell text: a count or "100.0%" */
    int label_chars; /* widest label */
} plot_data;

static long row_total(const confusion_matrix *m, int row) {
    long total = 0;
    for (int j = 0; j < m->classes; j++) total += confusion_at(m, row, j);
    return total;
}

/* The cell's share of its row, 0..1 (0 for an empty row). */
static double row_share(const confusion_matrix *m, int row, int col) {
    long total = row_total(m, row);
    return total ? (double)confusion_at(m, row, col) / (double)total : 0;
}

static void cell_texts(const confusion_matrix *m, int row, int col, char count[24], char percent[16]) {
    snprintf(count, 24, "%ld", confusion_at(m, row, col));
    if (row_total(m, row)) snprintf(percent, 16, "%.1f%%", 100 * row_share(m, row, col));
    else snprintf(percent, 16, "-");
}

static bool is_utf8_continuation(char ch) { return ((unsigned char)ch & 0xC0) == 0x80; }

/* Characters in text: one per UTF-8 character (the PNG font draws non-ASCII ones as '?'). */
static int glyph_count(const char *text) {
    int n = 0;
    for (; *text; text++) n += !is_utf8_continuation(*text);
    return n;
}

/* Cuts at a UTF-8 character boundary, so that the SVG stays valid UTF-8. */
static void cut_label(const char *label, char out[MAX_LABEL_CHARS + 1]) {
    int keep = MAX_LABEL_CHARS - 2;
    if (strlen(label) <= MAX_LABEL_CHARS) {
        snprintf(out, MAX_LABEL_CHARS + 1, "%s", label);
        return;
    }
    while (keep > 0 && is_utf8_continuation(label[keep])) keep--;
    snprintf(out, MAX_LABEL_CHARS + 1, "%.*s..", keep, label);
}

static bool plot_data_init(plot_data *d, const confusion_matrix *m, const emote_model *model) {
    memset(d, 0, sizeof *d);
    d->m = m;
    d->labels = calloc((size_t)m->classes, sizeof *d->labels);
    if (!d->labels) return false;
    long correct = 0, biggest = 0;
    d->cell_chars = 6; /* "100.0%" */
    for (int i = 0; i < m->classes; i++) {
        cut_label(emote_model_label(model, i), d->labels[i]);
        int len = glyph_count(d->labels[i]);
        if (len > d->label_chars) d->label_chars = len;
        correct += confusion_at(m, i, i);
        for (int j = 0; j < m->classes; j++)
            if (confusion_at(m, i, j) > biggest) biggest = confusion_at(m, i, j);
    }
    char count[24];
    int count_chars = snprintf(count, sizeof count, "%ld", biggest);
    if (count_chars > d->cell_chars) d->cell_chars = count_chars;
    double accuracy = m->total ? 100.0 * (double)correct / (double)m->total : 0;
    snprintf(d->title, sizeof d->title, "Confusion matrix: accuracy %.2f%% (%ld images)", accuracy, m->total);
    snprintf(d->subtitle, sizeof d->subtitle, "rows: true label, columns: predicted; cells: count, row %%");
    return true;
}

/* ---- layout (pixels), shared by SVG and PNG -------------------------------------------- */

typedef struct {
    int char_w, line_h, gap;
    int cell;
    int grid_x, grid_y, width, height;
    int title_y, subtitle_y, predicted_y; /* text tops */
    int true_x;                           /* left edge of the vertical "true label" title */
    bool vertical_columns;                /* column labels too wide for a cell run upwards */
} plot_layout;

static int max_int(int a, int b) { return a > b ? a : b; }

static plot_layout layout_for(const plot_data *d, int char_w, int line_h) {
    plot_layout l = {char_w, line_h, line_h / 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, false};
    int margin = 2 * line_h, k = d->m->classes, label_w = d->label_chars * char_w;
    l.cell = max_int(d->cell_chars * char_w + 2 * l.gap, 3 * line_h);
    l.vertical_columns = label_w > l.cell - l.gap;
    l.title_y = margin;
    l.subtitle_y = l.title_y + line_h + l.gap;
    l.predicted_y = l.subtitle_y + line_h + 2 * l.gap;
    l.grid_y = l.predicted_y + line_h + l.gap + (l.vertical_columns ? label_w : line_h) + l.gap;
    l.true_x = margin;
    l.grid_x = l.true_x + line_h + l.gap + label_w + l.gap;
    int title_w = (int)strlen(d->title) * char_w;
    l.width = max_int(l.grid_x + k * l.cell, l.true_x + title_w) + margin;
    l.height = l.grid_y + k * l.cell + margin;
    return l;
}

/* The cell colour: white at share 0, dark blue at 1; text turns white on the dark half. */
typedef struct {
    unsigned char r, g, b;
} rgb;

static rgb cell_color(double share) {
    const rgb low = {255, 255, 255}, high = {8, 69, 148};
    rgb c = {(unsigned char)(low.r + (high.r - low.r) * share + 0.5),
             (unsigned char)(low.g + (high.g - low.g) * share + 0.5),
             (unsigned char)(low.b + (high.b - low.b) * share + 0.5)};
    return c;
}

static rgb text_color_on(double share) {
    return share > 0.5 ? (rgb){255, 255, 255} : (rgb){20, 20, 20};
}

/* ---- SVG ---------------------------------------------------------------------------------- */

static void svg_write_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

static void svg_text(FILE *f, int x, int y, const char *anchor, const char *extra, const char *text) {
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"%s\"%s>", x, y, anchor, extra);
    svg_write_text(f, text);
    fputs("</text>\n", f);
}

static bool write_svg(FILE *f, const plot_data *d) {
    plot_layout l = layout_for(d, 8, 14);
    int k = d->m->classes, grid_w = k * l.cell, base = l.line_h - 3; /* baseline below a text top */
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans Mono, monospace\" font-size=\"13\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            l.width, l.height, l.width, l.height);
    svg_text(f, l.true_x, l.title_y + base, "start", " font-weight=\"bold\"", d->title);
    svg_text(f, l.true_x, l.subtitle_y + base, "start", " fill=\"#555\"", d->subtitle);
    svg_text(f, l.grid_x + grid_w / 2, l.predicted_y + base, "middle", " font-weight=\"bold\"", "predicted");
    char rotate[96];
    snprintf(rotate, sizeof rotate, " font-weight=\"bold\" transform=\"rotate(-90 %d %d)\"", l.true_x + base,
             l.grid_y + grid_w / 2);
    svg_text(f, l.true_x + base, l.grid_y + grid_w / 2, "middle", rotate, "true label");
    for (int i = 0; i < k; i++) {
        int middle = l.grid_x + i * l.cell + l.cell / 2, bottom = l.grid_y - l.gap;
        if (l.vertical_columns) {
            snprintf(rotate, sizeof rotate, " transform=\"rotate(-90 %d %d)\"", middle + base / 2, bottom);
            svg_text(f, middle + base / 2, bottom, "start", rotate, d->labels[i]);
        } else {
            svg_text(f, middle, bottom - 3, "middle", "", d->labels[i]);
        }
        svg_text(f, l.grid_x - l.gap, l.grid_y + i * l.cell + l.cell / 2 + base / 2, "end", "", d->labels[i]);
    }
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            double share = row_share(d->m, i, j);
            rgb bg = cell_color(share), fg = text_color_on(share);
            int x = l.grid_x + j * l.cell, y = l.grid_y + i * l.cell;
            char count[24], percent[16], fill[40];
            cell_texts(d->m, i, j, count, percent);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#%02x%02x%02x\" stroke=\"#ccc\"/>\n",
                    x, y, l.cell, l.cell, bg.r, bg.g, bg.b);
            snprintf(fill, sizeof fill, " fill=\"#%02x%02x%02x\"", fg.r, fg.g, fg.b);
            svg_text(f, x + l.cell / 2, y + l.cell / 2 - 2, "middle", fill, count);
            svg_text(f, x + l.cell / 2, y + l.cell / 2 + l.line_h - 2, "middle", fill, percent);
        }
    }
    fputs("</svg>\n", f);
    return !ferror(f);
}

/* ---- PNG: a 5x8 bitmap font --------------------------------------------------------------- */

/* Printable ASCII from ' ' to '~': 7 rows above the baseline and one for descenders,
 * bit 4 = leftmost column. */
static const unsigned char font5x8[95][8] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /*   */ {0x04, 0x04, 0x04, 0x04, 0x00, 0x00, 0x04, 0x00}, /* ! */
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00}, /* " */ {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00}, /* # */
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00}, /* $ */ {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00}, /* % */
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00}, /* & */ {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00}, /* ( */ {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00}, /* ) */
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00}, /* * */ {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, /* , */ {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00}, /* . */ {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00}, /* / */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00}, /* 0 */ {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00}, /* 2 */ {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00}, /* 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00}, /* 4 */ {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00}, /* 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00}, /* 6 */ {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00}, /* 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00}, /* 8 */ {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00}, /* 9 */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00}, /* : */ {0x00, 0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00}, /* < */ {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00}, /* > */ {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00}, /* ? */
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00}, /* @ */ {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x00}, /* A */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00}, /* B */ {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00}, /* D */ {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00}, /* E */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00}, /* F */ {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00}, /* G */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00}, /* H */ {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00}, /* J */ {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00}, /* L */ {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00}, /* N */ {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00}, /* P */ {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00}, /* Q */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00}, /* R */ {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00}, /* S */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* T */ {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, /* V */ {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00}, /* W */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00}, /* X */ {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00}, /* Y */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00}, /* Z */ {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00}, /* [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00}, /* \ */ {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00}, /* ] */
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ^ */ {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00}, /* _ */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ` */ {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00}, /* b */ {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00}, /* c */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00}, /* d */ {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00}, /* e */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00}, /* f */ {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* h */ {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C}, /* j */ {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00}, /* k */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00}, /* l */ {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00}, /* n */ {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00}, /* o */
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10}, /* p */ {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01}, /* q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00}, /* r */ {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00}, /* s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00}, /* t */ {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00}, /* v */ {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00}, /* w */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00}, /* x */ {0x00, 0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00}, /* z */ {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}, /* | */ {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00}, /* ~ */
};

#define GLYPH_W 5
#define GLYPH_H 8
#define GLYPH_ADVANCE 6 /* columns per character, with the gap */
#define LINE_ROWS 11    /* rows per text line, with the gap */

typedef struct {
    unsigned char *pixels; /* RGB rows */
    int width, height;
} canvas;

static void set_pixel(canvas *c, int x, int y, rgb color) {
    if (x < 0 || y < 0 || x >= c->width || y >= c->height) return;
    unsigned char *p = c->pixels + ((size_t)y * (size_t)c->width + (size_t)x) * 3;
    p[0] = color.r;
    p[1] = color.g;
    p[2] = color.b;
}

static void fill_rect(canvas *c, int x, int y, int w, int h, rgb color) {
    for (int yy = y; yy < y + h; yy++)
        for (int xx = x; xx < x + w; xx++) set_pixel(c, xx, yy, color);
}

static const unsigned char *glyph_of(char ch) {
    unsigned char u = (unsigned char)ch;
    return font5x8[u >= ' ' && u <= '~' ? u - ' ' : '?' - ' '];
}

/* Draws text with its top-left corner at (x, y), each font pixel scale x scale. Vertical
 * text is turned 90 degrees counter-clockwise: it reads upwards and (x, y) is its
 * bottom-left corner. */
static void draw_text(canvas *c, int x, int y, const char *text, int scale, rgb color, bool vertical) {
    for (int i = 0; *text; text++) {
        if (is_utf8_continuation(*text)) continue;
        const unsigned char *glyph = glyph_of(*text);
        for (int row = 0; row < GLYPH_H; row++) {
            for (int col = 0; col < GLYPH_W; col++) {
                if (!(glyph[row] & (0x10 >> col))) continue;
                int along = (i * GLYPH_ADVANCE + col) * scale, across = row * scale;
                if (vertical) fill_rect(c, x + across, y - along - scale, scale, scale, color);
                else fill_rect(c, x + along, y + across, scale, scale, color);
            }
        }
        i++;
    }
}

static int text_width(const char *text, int scale) { return glyph_count(text) * GLYPH_ADVANCE * scale - scale; }

static void draw_png_cells(canvas *c, const plot_data *d, const plot_layout *l, int scale) {
    const rgb grid = {204, 204, 204};
    int k = d->m->classes, glyph_h = GLYPH_H * scale;
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            double share = row_share(d->m, i, j);
            int x = l->grid_x + j * l->cell, y = l->grid_y + i * l->cell;
            char count[24], percent[16];
            cell_texts(d->m, i, j, count, percent);
            fill_rect(c, x, y, l->cell, l->cell, grid);
            fill_rect(c, x + 1, y + 1, l->cell - 1, l->cell - 1, cell_color(share));
            int top = y + (l->cell - 2 * glyph_h - l->gap) / 2;
            draw_text(c, x + (l->cell - text_width(count, scale)) / 2, top, count, scale, text_color_on(share), false);
            draw_text(c, x + (l->cell - text_width(percent, scale)) / 2, top + glyph_h + l->gap, percent, scale,
                      text_color_on(share), false);
        }
    }
    fill_rect(c, l->grid_x, l->grid_y + k * l->cell, k * l->cell + 1, 1, grid); /* closing edges */
    fill_rect(c, l->grid_x + k * l->cell, l->grid_y, 1, k * l->cell + 1, grid);
}

static void draw_png_labels(canvas *c, const plot_data *d, const plot_layout *l, int scale) {
    const rgb ink = {20, 20, 20}, grey = {90, 90, 90};
    int k = d->m->classes, glyph_h = GLYPH_H * scale, grid_w = k * l->cell;
    draw_text(c, l->true_x, l->title_y, d->title, scale, ink, false);
    draw_text(c, l->true_x, l->subtitle_y, d->subtitle, scale, grey, false);
    draw_text(c, l->grid_x + (grid_w - text_width("predicted", scale)) / 2, l->predicted_y, "predicted", scale, ink,
              false);
    draw_text(c, l->true_x, l->grid_y + (grid_w + text_width("true label", scale)) / 2, "true label", scale, ink,
              true);
    for (int i = 0; i < k; i++) {
        int middle = i * l->cell + (l->cell - glyph_h) / 2, bottom = l->grid_y - l->gap;
        if (l->vertical_columns)
            draw_text(c, l->grid_x + middle, bottom, d->labels[i], scale, ink, true);
        else
            draw_text(c, l->grid_x + i * l->cell + (l->cell - text_width(d->labels[i], scale)) / 2, bottom - glyph_h,
                      d->labels[i], scale, ink, false);
        draw_text(c, l->grid_x - l->gap - text_width(d->labels[i], scale), l->grid_y + middle, d->labels[i], scale,
                  ink, false);
    }
}

static void write_to_file(void *context, void *data, int size) {
    FILE *f = context;
    if (size > 0) fwrite(data, 1, (size_t)size, f);
}

static bool write_png(FILE *f, const plot_data *d) {
    int scale = d->m->classes <= 16 ? 2 : 1;
    plot_layout l = layout_for(d, GLYPH_ADVANCE * scale, LINE_ROWS * scale);
    if (l.width > MAX_PNG_SIDE || l.height > MAX_PNG_SIDE) {
        errno = EFBIG;
        return false;
    }
    canvas c = {malloc((size_t)l.width * (size_t)l.height * 3), l.width, l.height};
    if (!c.pixels) {
        errno = ENOMEM;
        return false;
    }
    memset(c.pixels, 255, (size_t)l.width * (size_t)l.height * 3);
    draw_png_labels(&c, d, &l, scale);
    draw_png_cells(&c, d, &l, scale);
    bool ok = stbi_write_png_to_func(write_to_file, f, c.width, c.height, 3, c.pixels, c.width * 3) != 0;
    free(c.pixels);
    if (!ok) errno = ENOMEM;
    return ok && !ferror(f);
}

/* ---- writing the file ---------------------------------------------------------------------- */

/* Complete or not at all: through atomic_file, replacing an older plot of that name. */
static bool write_atomically(const char *path, bool (*write)(FILE *, const plot_data *), const plot_data *d) {
    atomic_file a;
    emote_error err;
    if (atomic_file_begin_for(&a, path, &err)) {
        fprintf(stderr, "emote: %s: cannot write the plot: %s\n", path, err.message);
        return false;
    }
    errno = 0;
    bool ok = write(a.f, d);
    if (!ok) format_message(err.message, sizeof err.message, "%s", strerror(errno ? errno : EIO));
    else ok = !atomic_file_finish(&a, &err) && atomic_file_publish(&a, path, true, &err) == ATOMIC_PUBLISHED;
    if (!ok) fprintf(stderr, "emote: %s: cannot write the plot: %s\n", path, err.message);
    atomic_file_discard(&a);
    return ok;
}

bool plot_confusion(const char *path, const confusion_matrix *m, const emote_model *model) {
    if (!plot_format_supported(path)) {
        fprintf(stderr, "emote: %s: plots are written as .png or .svg\n", path);
        return false;
    }
    plot_data d;
    if (!plot_data_init(&d, m, model)) {
        fprintf(stderr, "emote: %s: out of memory\n", path);
        return false;
    }
    bool ok = write_atomically(path, is_png(path) ? write_png : write_svg, &d);
    free(d.labels);
    return ok;
}
