/* --faces in the command line: the detector and the options for the pipeline's face stage
 * (emote_pipeline_options.detector: the library finds, crops and classifies the faces),
 * --save-crops (in input order, never overwriting) and the face fields of the records.
 * Its options are among the engine's (cli.h). */
#include <errno.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic_file.h"
#include "cli.h"
#include "stb_image_write.h"
#include "util.h"

bool faces_open(faces_state *st, const engine_options *eo) {
    const faces_options *o = &eo->faces;
    memset(st, 0, sizeof *st);
    if (!o->on) return true; /* --tta and --stdin-image were refused while parsing (engine_option) */
    emote_error err;
    if (!(st->detector = emote_model_open_builtin_named("yunet", &err))) {
        fprintf(stderr, "emote: --faces: %s\n", err.message);
        return false;
    }
    return true;
}

void faces_close(faces_state *st) {
    emote_model_close(st->detector);
    memset(st, 0, sizeof *st);
}

/* ---- --save-crops ------------------------------------------------------------- */

#define MAX_CROP_SUFFIX 100000

/* A face crop encoded as PNG: png malloc'd. */
typedef struct {
    char *png;
    size_t size;
} encoded_crop;

static void write_to_stream(void *stream, void *data, int size) {
    if (size > 0) fwrite(data, 1, (size_t)size, stream);
}

static bool encode_png(const emote_image *crop, encoded_crop *out) {
    FILE *f = open_memstream(&out->png, &out->size);
    if (!f) return false;
    bool ok = stbi_write_png_to_func(write_to_stream, f, crop->width, crop->height, crop->channels, crop->pixels,
                                     crop->width * crop->channels) != 0;
    if (fclose(f) != 0) ok = false;
    return ok;
}

/* DIR/STEM.face<K>.png for n == 1, else DIR/STEM~n.face<K>.png (STEM: the input's file name
 * without its extension). */
static char *crop_path(const char *dir, const char *input, int n, int k) {
    const char *base = strrchr(input, '/') ? strrchr(input, '/') + 1 : input;
    const char *dot = strrchr(base, '.');
    int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    char suffix[16] = "", *path;
    if (n > 1) snprintf(suffix, sizeof suffix, "~%d", n);
    return asprintf(&path, "%s/%.*s%s.face%d.png", dir, stem, base, suffix, k) < 0 ? NULL : path;
}

/* "INPUT: cannot save its face crop CROP: reason", both names shortened to keep the reason. */
static void crop_error(char *error, size_t cap, const char *input, const char *crop, const char *reason) {
    char short_crop[256];
    shorten_name(crop, short_crop, sizeof short_crop);
    format_message(error, cap, "%s: cannot save its face crop %s: %s", input, short_crop, reason);
}

typedef enum { CROP_NAMES_FREE, CROP_NAMES_TAKEN, CROP_NAMES_ERROR } crop_names;

/* Whether names n of all the crops are free or hold the same crops already. */
static crop_names examine_crop_names(const char *dir, const char *input, int n, const encoded_crop *crops,
                                     int count, char *error, size_t cap) {
    for (int k = 0; k < count; k++) {
        char *name = crop_path(dir, input, n, k);
        struct stat st;
        crop_names state = CROP_NAMES_FREE;
        if (!name) {
            format_message(error, cap, "%s: out of memory", input);
            state = CROP_NAMES_ERROR;
        } else if (lstat(name, &st) == 0) {
            if (!file_holds_bytes(name, crops[k].png, crops[k].size)) state = CROP_NAMES_TAKEN;
        } else if (errno != ENOENT) {
            crop_error(error, cap, input, name, strerror(errno));
            state = CROP_NAMES_ERROR;
        }
        free(name);
        if (state != CROP_NAMES_FREE) return state;
    }
    return CROP_NAMES_FREE;
}

/* Writes crop k as name n unless it is there already; ATOMIC_NAME_TAKEN when another file
 * took the name meanwhile. */
static atomic_publish_status write_crop(const char *dir, const char *input, int n, int k, const encoded_crop *crop,
                                        char *error, size_t cap) {
    char *name = crop_path(dir, input, n, k);
    if (!name) {
        format_message(error, cap, "%s: out of memory", input);
        return ATOMIC_FAILED;
    }
    atomic_file a = {0};
    emote_error err;
    atomic_publish_status s = ATOMIC_FAILED;
    if (file_holds_bytes(name, crop->png, crop->size)) s = ATOMIC_PUBLISHED;
    else if (!atomic_file_begin(&a, dir, strrchr(name, '/') + 1, &err) && fwrite(crop->png, 1, crop->size, a.f) == crop->size &&
             !atomic_file_finish(&a, &err))
        s = atomic_file_publish(&a, name, false, &err);
    else if (a.f) snprintf(err.message, sizeof err.message, "%s", strerror(errno));
    if (s == ATOMIC_NAME_TAKEN && file_holds_bytes(name, crop->png, crop->size)) s = ATOMIC_PUBLISHED;
    if (s == ATOMIC_FAILED) crop_error(error, cap, input, name, err.message);
    atomic_file_discard(&a);
    free(name);
    return s;
}

/* Saves an input's crops under the first names n that are free or already hold them, so that
 * inputs with the same file name keep apart, nothing is overwritten and a re-run adds
 * nothing. False with error when a crop cannot be written. */
static bool save_crops(const char *dir, const char *input, const encoded_crop *crops, int count, char *error,
                       size_t cap) {
    for (int n = 1; n <= MAX_CROP_SUFFIX; n++) {
        crop_names names = examine_crop_names(dir, input, n, crops, count, error, cap);
        if (names == CROP_NAMES_ERROR) return false;
        if (names == CROP_NAMES_TAKEN) continue;
        atomic_publish_status s = ATOMIC_PUBLISHED;
        for (int k = 0; k < count && s == ATOMIC_PUBLISHED; k++) s = write_crop(dir, input, n, k, &crops[k], error, cap);
        if (s == ATOMIC_PUBLISHED) return true;
        if (s == ATOMIC_FAILED) return false;
    }
    format_message(error, cap, "%s: cannot save its face crops: too many names taken in %s", input, dir);
    return false;
}

void faces_pipeline_options(const faces_state *st, const engine_options *eo, emote_pipeline_options *po,
                            emote_detect_options *detect) {
    const faces_options *o = &eo->faces;
    *detect = (emote_detect_options){o->min_score, 0.45f, o->detect_size, o->main_face_only ? 0 : o->max_faces,
                                     o->any_angle};
    po->detector = st->detector;
    po->detect = detect;
    po->main_face_only = o->main_face_only;
    po->keep_crops = o->save_crops != NULL;
    po->decode = (emote_decode_options){.ignore_orientation = eo->no_exif}; /* full size: boxes in source pixels */
}

void faces_note_limit(const engine_options *eo, const emote_result *r) {
    if (eo->quiet || eo->faces.main_face_only || r->face_index != 0 || r->faces_found <= r->face_count) return;
    char message[EMOTE_ERROR_MAX];
    format_message(message, sizeof message, "%s: %d faces found, classifying the %d most confident (--max-faces)",
                   r->path, r->faces_found, r->face_count);
    print_error(message);
}

/* The image's crops as PNG, into crops[face_count]; false when out of memory. */
static bool encode_crops(const emote_result *r, encoded_crop *crops) {
    for (int k = 0; k < r->face_count; k++)
        if (!encode_png(&r->crops[k], &crops[k])) return false;
    return true;
}

bool faces_save_crops(const faces_options *o, const emote_result *r, char *error, size_t cap) {
    if (!o->save_crops || !r->crops || r->face_count < 1) return true;
    encoded_crop *crops = calloc_array((size_t)r->face_count, sizeof *crops);
    bool ok = crops && encode_crops(r, crops);
    if (!ok) format_message(error, cap, "%s: out of memory", r->path);
    else ok = save_crops(o->save_crops, r->path, crops, r->face_count, error, cap);
    for (int k = 0; crops && k < r->face_count; k++) free(crops[k].png);
    free(crops);
    return ok;
}

/* ---- records ------------------------------------------------------------------ */

static const char *const landmark_columns[10] = {"right_eye_x", "right_eye_y", "left_eye_x", "left_eye_y",
                                                 "nose_x", "nose_y", "right_mouth_x", "right_mouth_y",
                                                 "left_mouth_x", "left_mouth_y"};

void faces_write_header(FILE *f, char sep) {
    fprintf(f, "%cface%cbox_x%cbox_y%cbox_w%cbox_h%cface_score", sep, sep, sep, sep, sep, sep);
    for (int i = 0; i < 10; i++) fprintf(f, "%c%s", sep, landmark_columns[i]);
}

/* Coordinates with one decimal: detection is not more precise than a tenth of a pixel. */
void faces_write_columns(FILE *f, char sep, const result *r) {
    if (!r->face) {
        for (int i = 0; i < FACE_COLUMNS; i++) fputc(sep, f);
        return;
    }
    const emote_face *b = r->face;
    fprintf(f, "%c%d%c%.1f%c%.1f%c%.1f%c%.1f%c%.4f", sep, r->face_index, sep, (double)b->x, sep, (double)b->y, sep,
            (double)b->w, sep, (double)b->h, sep, (double)b->score);
    for (int i = 0; i < 10; i++) fprintf(f, "%c%.1f", sep, (double)b->landmarks[i]);
}

void faces_write_json(FILE *f, const result *r) {
    if (!r->face) return;
    const emote_face *b = r->face;
    fprintf(f, ",\"face\":%d,\"box\":[%.1f,%.1f,%.1f,%.1f],\"face_score\":%.4f,\"landmarks\":[", r->face_index,
            (double)b->x, (double)b->y, (double)b->w, (double)b->h, (double)b->score);
    for (int i = 0; i < 10; i++) fprintf(f, "%s%.1f", i ? "," : "", (double)b->landmarks[i]);
    fputc(']', f);
}
