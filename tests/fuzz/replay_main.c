/* Replays fuzz inputs without libFuzzer: linked with one tests/fuzz/fuzz_<reader>.c, it hands
 * each file named on the command line to LLVMFuzzerTestOneInput, as libFuzzer would (in a
 * buffer of exactly the file's size, so a sanitizer sees any read past it). Built with the
 * sanitizers by `make check` (tests/run_all.sh), which replays tests/fuzz/corpus/<reader>/;
 * a crash or a failed check in the target ends the run with a non-zero status. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_INPUT = 64 << 20 }; /* corpus files are small; anything larger is a mistake */

/* The whole of a regular file, malloc'd (at least one byte, so never NULL when it worked). */
static uint8_t *read_input(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *data = NULL;
    if (!f || fstat(fileno(f), &st) != 0)
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    else if (!S_ISREG(st.st_mode) || st.st_size > MAX_INPUT)
        fprintf(stderr, "replay: %s: not a regular file of at most 64 MiB\n", path);
    else if (!(data = malloc(st.st_size ? (size_t)st.st_size : 1)))
        fprintf(stderr, "replay: %s: out of memory\n", path);
    else if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size || fgetc(f) != EOF) {
        fprintf(stderr, "replay: %s: cannot read it whole\n", path);
        free(data);
        data = NULL;
    }
    *size = data ? (size_t)st.st_size : 0;
    if (f) fclose(f);
    return data;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...  (each file is one input of the fuzz target)\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        size_t size;
        fprintf(stderr, "replay: %s\n", argv[i]); /* names the input that a crash report follows */
        uint8_t *data = read_input(argv[i], &size);
        if (!data) return 1;
        LLVMFuzzerTestOneInput(data, size);
        free(data);
    }
    printf("replayed %d inputs\n", argc - 1);
    return 0;
}
