/* emote --version: what this binary is made of, for bug reports. */
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <jpeglib.h>

#include "cli.h"
#include "layers/layers.h"
#include "util.h"

#ifndef EMOTE_VERSION
#define EMOTE_VERSION "0.1.0"
#endif
#ifndef EMOTE_COMMIT
#define EMOTE_COMMIT "unknown"
#endif
/* The image decoders linked in (kept up to date with src/image and src/third_party/stb). */
#define EMOTE_IMAGE_DECODERS                                                                   \
    "libjpeg-turbo " STRINGIFY(LIBJPEG_TURBO_VERSION) " (JPEG), stb_image v2.30 (PNG, BMP, GIF, PNM)"

int cmd_version(void) {
    printf("emote %s (commit %s)\n", EMOTE_VERSION, EMOTE_COMMIT);
    printf("OpenBLAS    %s; core %s\n", openblas_get_config(), openblas_get_corename());
    printf("GEMM        our own over packed weights, %s kernel (the convs with small planes)\n", packed_gemm_kernel());
    printf("images      %s\n", EMOTE_IMAGE_DECODERS);
    if (!emote_builtin_model_name(0)) printf("built-in    no model (give one with -m FILE)\n");
    for (int i = 0; emote_builtin_model_name(i); i++) {
        emote_error err;
        emote_model *m = emote_model_open_builtin_named(emote_builtin_model_name(i), &err);
        if (!m) {
            printf("built-in    %s: %s\n", emote_builtin_model_name(i), err.message);
            continue;
        }
        const emote_input_spec *in = emote_model_input(m);
        printf("built-in    %s%s: %d labels, %dx%dx%d input, %.2f M parameters\n", emote_builtin_model_name(i),
               i == 0 ? " (default)" : "", emote_model_num_classes(m), in->channels, in->height, in->width,
               (double)emote_model_param_count(m) / 1e6);
        emote_model_close(m);
    }
    return EXIT_ALL_OK; /* main checks that stdout took it all */
}
