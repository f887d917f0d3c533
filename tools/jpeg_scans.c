/* jpeg_scans IN.jpg OUT.jpg [DROP]: rewrites a JPEG losslessly (its DCT coefficients) as a
 * sequential JPEG with one scan per component, Y then Cb then Cr (what `cjpeg -scans` makes
 * with a script "0; 1; 2;"). With DROP (a component index), that component's scan is cut out
 * of the file afterwards, headers intact: the test fixture of a JPEG with a missing scan
 * (tests/fixtures/jpeg/, README "Untrusted inputs"). libjpeg itself refuses to write such a file.
 *
 *   cc -o jpeg_scans tools/jpeg_scans.c -ljpeg */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = NULL;
    size_t cap = 0;
    *size = 0;
    for (;;) {
        if (*size == cap) {
            unsigned char *bigger = realloc(data, cap = cap ? 2 * cap : 65536);
            if (!bigger) break;
            data = bigger;
        }
        size_t got = fread(data + *size, 1, cap - *size, f);
        if (got == 0) break;
        *size += got;
    }
    fclose(f);
    return data;
}

/* Transcodes to one sequential scan per component, into *out (malloc'd by libjpeg). */
static void one_scan_per_component(const unsigned char *in, size_t in_size, unsigned char **out, unsigned long *out_size) {
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    struct jpeg_error_mgr src_err, dst_err;
    src.err = jpeg_std_error(&src_err);
    dst.err = jpeg_std_error(&dst_err);
    jpeg_create_decompress(&src);
    jpeg_create_compress(&dst);
    jpeg_mem_src(&src, in, (unsigned long)in_size);
    jpeg_read_header(&src, TRUE);
    jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
    jpeg_copy_critical_parameters(&src, &dst);
    static jpeg_scan_info scans[MAX_COMPONENTS];
    for (int c = 0; c < src.num_components; c++) scans[c] = (jpeg_scan_info){1, {c}, 0, 63, 0, 0};
    dst.scan_info = scans;
    dst.num_scans = src.num_components;
    jpeg_mem_dest(&dst, out, out_size);
    jpeg_write_coefficients(&dst, coefficients);
    jpeg_finish_compress(&dst);
    jpeg_destroy_compress(&dst);
    jpeg_finish_decompress(&src);
    jpeg_destroy_decompress(&src);
}

/* The end of the segment whose marker is at `at`: for SOS, past its entropy-coded data
 * (which ends at the first marker other than a stuffed 0xFF00 or a restart marker). */
static size_t segment_end(const unsigned char *d, size_t size, size_t at) {
    size_t end = at + 2 + ((size_t)d[at + 2] << 8 | d[at + 3]);
    if (d[at + 1] != 0xDA) return end;
    while (end + 1 < size && !(d[end] == 0xFF && d[end + 1] != 0x00 && (d[end + 1] < 0xD0 || d[end + 1] > 0xD7))) end++;
    return end;
}

/* Cuts out scan number `drop` (0-based); false if the file has no such scan. */
static int drop_scan(unsigned char *d, size_t *size, int drop) {
    int scan = 0;
    for (size_t at = 2; at + 3 < *size && d[at] == 0xFF && d[at + 1] != 0xD9;) {
        size_t end = segment_end(d, *size, at);
        if (end > *size) return 0;
        if (d[at + 1] == 0xDA && scan++ == drop) {
            memmove(d + at, d + end, *size - end);
            *size -= end - at;
            return 1;
        }
        at = end;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: jpeg_scans IN.jpg OUT.jpg [DROP]\n");
        return 2;
    }
    size_t in_size;
    unsigned char *in = read_all(argv[1], &in_size);
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    one_scan_per_component(in, in_size, &out, &out_size);
    size_t size = out_size;
    if (argc == 4 && !drop_scan(out, &size, atoi(argv[3]))) {
        fprintf(stderr, "jpeg_scans: %s has no scan %s\n", argv[1], argv[3]);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(out, 1, size, f) != size || fclose(f) != 0) {
        perror(argv[2]);
        return 1;
    }
    free(out);
    free(in);
    return 0;
}
