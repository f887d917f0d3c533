/* The face stage of the reading pipeline (src/pipeline.c): an image's faces, found, chosen
 * and cropped, each crop preprocessed for the classifier. Runs on a reader thread. */
#ifndef EMOTE_FACE_CROPS_H
#define EMOTE_FACE_CROPS_H

#include "emote.h"

typedef struct {
    const emote_model *detector;
    emote_detect_options detect; /* max_faces: the most confident kept (0: all) */
    int main_face_only;          /* keep only emote_main_face */
    int keep_crops;              /* keep each face's crop at framing 1.0 */
} face_stage;

typedef struct {
    emote_face *faces; /* count faces, largest first, boxes clipped to the image */
    int count, found;  /* found: before max_faces or main_face_only */
    float *rows;       /* count * EMOTE_FACE_FRAMINGS preprocessed crops, face by face */
    emote_image *crops; /* keep_crops: count crops at framing 1.0; else NULL */
} image_faces;

/* Finds image's faces, keeps those the stage asks for and preprocesses each face's
 * EMOTE_FACE_FRAMINGS crops for classifier into out->rows; name (the image's) is for
 * messages. On failure out is freed. */
emote_status find_face_crops(const face_stage *stage, const emote_model *classifier, const char *name,
                             const emote_image *image, image_faces *out, emote_error *err);
void image_faces_free(image_faces *f); /* and zeroes it */

/* The mean of a face's EMOTE_FACE_FRAMINGS consecutive rows of `width` floats, written
 * over the first; returns it. */
float *average_framings(float *rows, int width);

#endif
