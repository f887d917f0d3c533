/* PNG/BMP writing for plots and test images: the pinned stb_image_write. */
#define STB_IMAGE_WRITE_IMPLEMENTATION
/* stb is compiled as it is; only the decoders we use are called. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include "stb_image_write.h"
#pragma GCC diagnostic pop
