/* bench_sgemm: raw cblas_sgemm GFLOP/s, the machine's limit for tools/bench.py; prints JSON.
 *
 *   bench_sgemm SECONDS THREADS[,THREADS...] SQUARE M,N,K [M,N,K ...]
 *
 * The M,N,K list is one image's worth of the engine's conv GEMMs (M = output channels,
 * N = output pixels, K = input channels * kernel area; row-major, no transposes, as in
 * src/layers/conv.c). For each thread count T it reports
 *   model/openblas: the list run back to back by one caller, OpenBLAS using T threads;
 *   model/workers:  T callers each running the list on their own buffers, OpenBLAS on one
 *                   thread per call -- how libemote's sessions use the machine;
 *   square/openblas: one SQUARE x SQUARE x SQUARE GEMM, OpenBLAS using T threads;
 * and, on one thread, each shape alone. Each figure is timed for at least SECONDS.
 * Built with -DEMOTE_BENCH_CLI_KERNEL and src/cli/blas_kernel.c, it picks OpenBLAS's kernel
 * as the emote CLI does, so that it measures the kernel emote runs.
 */
#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef EMOTE_BENCH_CLI_KERNEL
void choose_blas_kernel(char **argv); /* src/cli/blas_kernel.c */
#endif

#define MAX_SHAPES 256
#define MAX_THREADS 64

typedef struct {
    int m, n, k;
} shape;

typedef struct {
    float *a, *b, *c;
} operands;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *random_floats(size_t count, unsigned *seed) {
    float *p = malloc(count * sizeof(float));
    if (!p) {
        fputs("bench_sgemm: out of memory\n", stderr);
        exit(1);
    }
    for (size_t i = 0; i < count; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / (float)(1u << 24) - 0.5f;
    }
    return p;
}

static operands operands_new(shape s, unsigned seed) {
    operands o = {random_floats((size_t)s.m * s.k, &seed), random_floats((size_t)s.k * s.n, &seed),
                  random_floats((size_t)s.m * s.n, &seed)};
    return o;
}

static void operands_free(operands *o) {
    free(o->a);
    free(o->b);
    free(o->c);
}

static void gemm(shape s, const operands *o) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.m, s.n, s.k, 1.0f, o->a, s.k, o->b, s.n, 0.0f, o->c, s.n);
}

static double flops_of(const shape *shapes, int count) {
    double f = 0;
    for (int i = 0; i < count; i++) f += 2.0 * shapes[i].m * shapes[i].n * shapes[i].k;
    return f;
}

/* Runs the shape list until `seconds` have passed (at least 3 rounds); returns rounds and sets *elapsed. */
static long run_list(const shape *shapes, const operands *ops, int count, double seconds, double *elapsed) {
    for (int i = 0; i < count; i++) gemm(shapes[i], &ops[i]); /* warm-up */
    long rounds = 0;
    double start = now_seconds();
    do {
        for (int i = 0; i < count; i++) gemm(shapes[i], &ops[i]);
        rounds++;
        *elapsed = now_seconds() - start;
    } while (rounds < 3 || *elapsed < seconds);
    return rounds;
}

typedef struct {
    const shape *shapes;
    int count;
    double seconds, elapsed;
    long rounds;
    unsigned seed;
    pthread_barrier_t *barrier;
} worker;

static void *worker_run(void *arg) {
    worker *w = arg;
    operands ops[MAX_SHAPES];
    for (int i = 0; i < w->count; i++) ops[i] = operands_new(w->shapes[i], w->seed + 7u * (unsigned)i);
    pthread_barrier_wait(w->barrier);
    w->rounds = run_list(w->shapes, ops, w->count, w->seconds, &w->elapsed);
    for (int i = 0; i < w->count; i++) operands_free(&ops[i]);
    return NULL;
}

/* T callers at once, each on one OpenBLAS thread: total GFLOP/s over the slowest caller's time. */
static double workers_gflops(const shape *shapes, int count, int threads, double seconds) {
    openblas_set_num_threads(1);
    worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        w[t] = (worker){shapes, count, seconds, 0, 0, 1000u * (unsigned)t + 1u, &barrier};
        if (t && pthread_create(&tid[t], NULL, worker_run, &w[t]) != 0) {
            fprintf(stderr, "bench_sgemm: pthread_create: %s\n", strerror(errno));
            exit(1);
        }
    }
    worker_run(&w[0]);
    double flops = 0, slowest = 0;
    for (int t = 0; t < threads; t++) {
        if (t) pthread_join(tid[t], NULL);
        flops += flops_of(shapes, count) * (double)w[t].rounds;
        if (w[t].elapsed > slowest) slowest = w[t].elapsed;
    }
    pthread_barrier_destroy(&barrier);
    return flops / slowest * 1e-9;
}

static double openblas_gflops(const shape *shapes, int count, int threads, double seconds) {
    openblas_set_num_threads(threads);
    operands ops[MAX_SHAPES];
    memset(ops, 0, sizeof ops);
    for (int i = 0; i < count; i++) ops[i] = operands_new(shapes[i], 7u * (unsigned)i + 3u);
    double elapsed = 0;
    long rounds = run_list(shapes, ops, count, seconds, &elapsed);
    for (int i = 0; i < count; i++) operands_free(&ops[i]);
    return flops_of(shapes, count) * (double)rounds / elapsed * 1e-9;
}

static int parse_threads(const char *s, int *threads) {
    int count = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_THREADS || count == MAX_THREADS) return 0;
        threads[count++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return count;
}

int main(int argc, char **argv) {
    double seconds;
    int threads[MAX_THREADS], num_threads, square, count = argc - 4;
    char *end;
#ifdef EMOTE_BENCH_CLI_KERNEL
    choose_blas_kernel(argv);
#endif
    if (argc < 4 || (seconds = strtod(argv[1], &end)) <= 0 || *end || !(num_threads = parse_threads(argv[2], threads)) ||
        (square = atoi(argv[3])) < 1 || count > MAX_SHAPES) {
        fputs("usage: bench_sgemm SECONDS THREADS[,THREADS...] SQUARE M,N,K [M,N,K ...]\n", stderr);
        return 2;
    }
    shape shapes[MAX_SHAPES];
    for (int i = 0; i < count; i++) {
        int used = 0;
        if (sscanf(argv[4 + i], "%d,%d,%d%n", &shapes[i].m, &shapes[i].n, &shapes[i].k, &used) != 3 ||
            argv[4 + i][used] || shapes[i].m < 1 || shapes[i].n < 1 || shapes[i].k < 1) {
            fprintf(stderr, "bench_sgemm: bad shape '%s' (want M,N,K)\n", argv[4 + i]);
            return 2;
        }
    }
    const shape big = {square, square, square};
    printf("{\"openblas_config\":\"%s\",\"openblas_corename\":\"%s\",\"openblas_num_procs\":%d,\"seconds\":%g,"
           "\"square\":%d,\"model_gflop_per_round\":%.6f,\"results\":[",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_procs(), seconds, square,
           flops_of(shapes, count) * 1e-9);
    for (int t = 0; t < num_threads; t++) {
        if (count) {
            printf("%s{\"set\":\"model\",\"mode\":\"openblas\",\"threads\":%d,\"gflops\":%.3f},", t ? "," : "",
                   threads[t], openblas_gflops(shapes, count, threads[t], seconds));
            printf("{\"set\":\"model\",\"mode\":\"workers\",\"threads\":%d,\"gflops\":%.3f},", threads[t],
                   workers_gflops(shapes, count, threads[t], seconds));
        } else if (t) {
            putchar(',');
        }
        printf("{\"set\":\"square\",\"mode\":\"openblas\",\"threads\":%d,\"gflops\":%.3f}", threads[t],
               openblas_gflops(&big, 1, threads[t], seconds));
        fflush(stdout);
    }
    printf("],\"per_shape_1_thread\":[");
    for (int i = 0; i < count; i++)
        printf("%s{\"m\":%d,\"n\":%d,\"k\":%d,\"gflops\":%.3f}", i ? "," : "", shapes[i].m, shapes[i].n, shapes[i].k,
               openblas_gflops(&shapes[i], 1, 1, seconds / 5));
    printf("]}\n");
    return 0;
}
