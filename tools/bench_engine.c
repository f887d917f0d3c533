/* bench_engine: times libemote's emote_classify for tools/bench.py; prints JSON on stdout.
 *
 *   bench_engine info  MODEL
 *   bench_engine check MODEL INPUTS.f32 COUNT THREADS PROBS_OUT.f32
 *   bench_engine time  MODEL INPUTS.f32 BATCH THREADS SECONDS
 *
 * INPUTS.f32 holds preprocessed images (CHW float32, native byte order) back to back.
 * check: classifies COUNT images as one batch on THREADS workers, writes the probabilities
 *   to PROBS_OUT, and reclassifies them one at a time on one thread to report whether the
 *   answers depend on batch size or thread count (they should not, bitwise).
 * time: warms up, then calls emote_classify on the first BATCH images until SECONDS have
 *   passed (at least 5 calls); reports images/s and the median and minimum ms per call.
 *
 * Built by tools/bench.py against build/release/libemote.a and src/no_builtin_model.c, and with
 * -DEMOTE_BENCH_CLI_KERNEL and src/cli/blas_kernel.c so that it picks OpenBLAS's kernel as the
 * emote CLI does (re-executing itself with OPENBLAS_CORETYPE set where OpenBLAS fell back to a
 * generic one).
 */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emote.h"

#ifdef EMOTE_BENCH_CLI_KERNEL
void choose_blas_kernel(char **argv); /* src/cli/blas_kernel.c */
void stop_blas_threads(void);
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what, const char *why) {
    fprintf(stderr, "bench_engine: %s: %s\n", what, why);
    return 1;
}

static int parse_int(const char *s, int min, int max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) return 0;
    *out = (int)v;
    return 1;
}

/* Reads count images of `floats` floats each; NULL (and a message) if the file is short or unreadable. */
static float *read_inputs(const char *path, size_t floats, int count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(path, strerror(errno));
        return NULL;
    }
    size_t want = floats * (size_t)count;
    float *data = malloc(want * sizeof(float));
    size_t got = data ? fread(data, sizeof(float), want, f) : 0;
    fclose(f);
    if (!data || got != want) {
        fail(path, data ? "shorter than the requested number of images" : "out of memory");
        free(data);
        return NULL;
    }
    return data;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

static int cmd_info(const emote_model *m) {
    const emote_input_spec *in = emote_model_input(m);
    printf("{\"model\":");
    print_json_string(emote_model_name(m));
    printf(",\"openblas_corename\":");
    print_json_string(openblas_get_corename());
    printf(",\"input\":[%d,%d,%d],\"classes\":%d,\"macs\":%llu,\"params\":%llu,\"ops\":[", in->channels, in->height,
           in->width, emote_model_num_classes(m), (unsigned long long)emote_model_macs(m),
           (unsigned long long)emote_model_param_count(m));
    for (int i = 0; i < emote_model_num_ops(m); i++) {
        if (i) putchar(',');
        print_json_string(emote_model_op_kind(m, i));
    }
    printf("]}\n");
    return 0;
}

static int cmd_check(const emote_model *m, const char *inputs_path, int count, int threads, const char *out_path) {
    size_t floats = emote_input_floats(m);
    int classes = emote_model_num_classes(m);
    float *inputs = read_inputs(inputs_path, floats, count);
    float *batched = malloc(sizeof(float) * (size_t)count * (size_t)classes);
    float *single = malloc(sizeof(float) * (size_t)count * (size_t)classes);
    emote_error err;
    emote_session *whole = NULL, *one = NULL;
    int rc = 1;
    if (!inputs || !batched || !single) goto done;
    if (!(whole = emote_session_new(m, count, threads, &err)) || !(one = emote_session_new(m, 1, 1, &err))) {
        fail("emote_session_new", err.message);
        goto done;
    }
    if (emote_classify(whole, inputs, count, batched, &err) != EMOTE_OK) {
        fail("emote_classify", err.message);
        goto done;
    }
    for (int i = 0; i < count; i++) {
        if (emote_classify(one, inputs + (size_t)i * floats, 1, single + (size_t)i * classes, &err) != EMOTE_OK) {
            fail("emote_classify", err.message);
            goto done;
        }
    }
    FILE *f = fopen(out_path, "wb");
    if (!f) {
        fail(out_path, strerror(errno));
        goto done;
    }
    size_t n = (size_t)count * (size_t)classes;
    int written = fwrite(batched, sizeof(float), n, f) == n;
    if (fclose(f) != 0 || !written) {
        fail(out_path, "write failed");
        goto done;
    }
    double max_diff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = batched[i] > single[i] ? batched[i] - single[i] : single[i] - batched[i];
        if (d > max_diff) max_diff = d;
    }
    printf("{\"count\":%d,\"threads\":%d,\"bitwise_batch_invariant\":%s,\"max_diff_batch_vs_single\":%.9g}\n", count,
           threads, memcmp(batched, single, n * sizeof(float)) ? "false" : "true", max_diff);
    rc = 0;
done:
    emote_session_free(whole);
    emote_session_free(one);
    free(inputs);
    free(batched);
    free(single);
    return rc;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_time(const emote_model *m, const char *inputs_path, int batch, int threads, double seconds) {
    size_t floats = emote_input_floats(m);
    float *inputs = read_inputs(inputs_path, floats, batch);
    float *probs = malloc(sizeof(float) * (size_t)batch * (size_t)emote_model_num_classes(m));
    size_t cap = 1024, calls = 0;
    double *times = malloc(cap * sizeof(double));
    emote_error err;
    emote_session *s = NULL;
    int rc = 1;
    if (!inputs || !probs || !times) goto done;
    if (!(s = emote_session_new(m, batch, threads, &err))) {
        fail("emote_session_new", err.message);
        goto done;
    }
    /* Warm-up: page in every buffer, let the CPU clock settle. */
    double warm_start = now_seconds();
    for (int n = 0; n < 2 || now_seconds() - warm_start < 0.25; n++) {
        if (emote_classify(s, inputs, batch, probs, &err) != EMOTE_OK) {
            fail("emote_classify", err.message);
            goto done;
        }
    }
    double start = now_seconds(), total;
    do {
        double t0 = now_seconds();
        emote_classify(s, inputs, batch, probs, &err);
        double t1 = now_seconds();
        if (calls == cap) {
            double *grown = realloc(times, 2 * cap * sizeof(double));
            if (!grown) goto done;
            times = grown;
            cap *= 2;
        }
        times[calls++] = t1 - t0;
        total = t1 - start;
    } while (calls < 5 || total < seconds);
    qsort(times, calls, sizeof(double), compare_doubles);
    double median = calls % 2 ? times[calls / 2] : 0.5 * (times[calls / 2 - 1] + times[calls / 2]);
    printf("{\"batch\":%d,\"threads\":%d,\"calls\":%zu,\"seconds\":%.6f,\"images_per_s\":%.3f,"
           "\"ms_per_batch_median\":%.6f,\"ms_per_batch_min\":%.6f}\n",
           batch, threads, calls, total, (double)calls * batch / total, median * 1e3, times[0] * 1e3);
    rc = 0;
done:
    emote_session_free(s);
    free(inputs);
    free(probs);
    free(times);
    return rc;
}

int main(int argc, char **argv) {
    static const char usage[] = "usage: bench_engine info MODEL\n"
                                "       bench_engine check MODEL INPUTS.f32 COUNT THREADS PROBS_OUT.f32\n"
                                "       bench_engine time MODEL INPUTS.f32 BATCH THREADS SECONDS\n";
    if (argc < 3) {
        fputs(usage, stderr);
        return 2;
    }
#ifdef EMOTE_BENCH_CLI_KERNEL
    choose_blas_kernel(argv);
    stop_blas_threads();
#endif
    const char *cmd = argv[1];
    int count = 0, threads = 0;
    double seconds = 0;
    char *end = NULL;
    int ok = (!strcmp(cmd, "info") && argc == 3) ||
             (!strcmp(cmd, "check") && argc == 7 && parse_int(argv[4], 1, 65536, &count) &&
              parse_int(argv[5], 0, 256, &threads)) ||
             (!strcmp(cmd, "time") && argc == 7 && parse_int(argv[4], 1, 65536, &count) &&
              parse_int(argv[5], 0, 256, &threads) && (seconds = strtod(argv[6], &end)) >= 0 && end && !*end);
    if (!ok) {
        fputs(usage, stderr);
        return 2;
    }
    emote_error err;
    emote_model *m = emote_model_open(argv[2], &err);
    if (!m) return fail("model", err.message);
    int rc = !strcmp(cmd, "info")    ? cmd_info(m)
             : !strcmp(cmd, "check") ? cmd_check(m, argv[3], count, threads, argv[6])
                                     : cmd_time(m, argv[3], count, threads, seconds);
    emote_model_close(m);
    return rc;
}
