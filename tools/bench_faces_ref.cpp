// libfacedetection (the reference YuNet, ../shared/third_party/libfacedetection) behind a C
// function for tools/bench_faces.c. Built only for `make bench-faces`; never linked into emote.
#include "facedetectcnn.h"

// Detects the faces of a BGR image (width * 3 bytes a row) into buffer
// (FACEDETECTION_RESULT_BUFFER_SIZE bytes); returns how many, or -1.
extern "C" int reference_detect_faces(unsigned char *buffer, unsigned char *bgr, int width, int height) {
    int *result = facedetect_cnn(buffer, bgr, width, height, width * 3);
    return result ? *result : -1;
}

extern "C" const int reference_buffer_size = FACEDETECTION_RESULT_BUFFER_SIZE;
