/* Aligned face crops: rotate about the box centre so the eyes are level to within
 * EMOTE_FACE_LEVEL_DEGREES (landmarks 0-1 are the right eye, 2-3 the left, on the image's
 * left and right), then take a square of side scale * max(w, h) around the centre, sampled
 * bilinearly, edges clamped. */
#include <math.h>
#include <stdlib.h>

#include "emote.h"
#include "util.h"

static float sample(const emote_image *img, float x, float y, int c) {
    x = fminf(fmaxf(x, 0.0f), (float)(img->width - 1));
    y = fminf(fmaxf(y, 0.0f), (float)(img->height - 1));
    int x0 = (int)x, y0 = (int)y;
    int x1 = x0 + 1 < img->width ? x0 + 1 : x0, y1 = y0 + 1 < img->height ? y0 + 1 : y0;
    float fx = x - (float)x0, fy = y - (float)y0;
    const int ch = img->channels;
#define PX(xx, yy) ((float)img->pixels[((size_t)(yy) * img->width + (xx)) * ch + c])
    float top = PX(x0, y0) + (PX(x1, y0) - PX(x0, y0)) * fx;
    float bottom = PX(x0, y1) + (PX(x1, y1) - PX(x0, y1)) * fx;
#undef PX
    return top + (bottom - top) * fy;
}

emote_status emote_face_crop(const emote_image *image, const emote_face *face, float scale, int size, emote_image *out,
                             emote_error *err) {
    emote_status s = check_image_argument(image, "emote_face_crop", err);
    if (s) return s;
    if (!face || !out)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_face_crop: no %s (NULL)", !face ? "face" : "output image");
    if (size < 1 || size > 4096 || !(scale > 0.0f && scale <= 16.0f))
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "face crop of %d pixels at scale %g is out of range", size, (double)scale);
    float tilt = atan2f(face->landmarks[3] - face->landmarks[1], face->landmarks[2] - face->landmarks[0]);
    float angle = copysignf(fmaxf(fabsf(tilt) - EMOTE_FACE_LEVEL_DEGREES * (float)M_PI / 180.0f, 0.0f), tilt);
    float cs = cosf(angle), sn = sinf(angle);
    float cx = face->x + face->w / 2, cy = face->y + face->h / 2;
    float side = scale * fmaxf(face->w, face->h);
    *out = (emote_image){.width = size, .height = size, .channels = image->channels};
    if (!(out->pixels = alloc_array((size_t)size * size, (size_t)image->channels)))
        return emote_fail(err, EMOTE_ERR_MEMORY, "emote_face_crop: out of memory");
    for (int v = 0; v < size; v++) {
        float dv = ((float)v + 0.5f) / (float)size * side - side / 2;
        for (int u = 0; u < size; u++) {
            float du = ((float)u + 0.5f) / (float)size * side - side / 2;
            float sx = cx + du * cs - dv * sn - 0.5f, sy = cy + du * sn + dv * cs - 0.5f;
            unsigned char *p = out->pixels + ((size_t)v * size + u) * image->channels;
            for (int c = 0; c < image->channels; c++) p[c] = (unsigned char)lroundf(sample(image, sx, sy, c));
        }
    }
    return EMOTE_OK;
}
