/* OpenBLAS picks its kernels from the CPU model number. Virtual machines that hide it
 * (seen here: "Intel(R) Xeon(R) Processor" with AVX-512) make it fall back to the SSE3
 * "Prescott" kernels, 2.6x slower on our convolutions (tools/bench.py). OpenBLAS reads
 * OPENBLAS_CORETYPE once, when it is loaded, so we set it from the CPU's features and
 * re-execute ourselves. A user's own OPENBLAS_CORETYPE is always left alone. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sys/resource.h>

#include "cli.h"

static const char *kernel_for_this_cpu(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

static bool address_space_is_limited(void) {
    struct rlimit as, data;
    return (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) ||
           (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur != RLIM_INFINITY);
}

/* Under `ulimit -v` (or -d), OpenBLAS's own threads, started when it is loaded, may fail to
 * map their 128 MiB buffers; OpenBLAS then retries forever, and stop_blas_threads would wait
 * for them. There emote runs with OPENBLAS_NUM_THREADS=1, so that they never start (the
 * session checks its own threads' buffers: emote_session_new). Not needed where none
 * started: ./emote keeps them from starting before OpenBLAS is initialised (main.c). */
static bool keep_blas_threads_from_starting(void) {
    return !getenv("OPENBLAS_NUM_THREADS") && openblas_get_num_threads() > 1 && address_space_is_limited() &&
           setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0;
}

static bool pick_better_kernel(void) {
    if (getenv("OPENBLAS_CORETYPE")) return false;
    const char *core = openblas_get_corename();
    const char *better = kernel_for_this_cpu();
    return core && strcasecmp(core, "prescott") == 0 && better && setenv("OPENBLAS_CORETYPE", better, 1) == 0;
}

void choose_blas_kernel(char **argv) {
    bool limited = keep_blas_threads_from_starting(), better = pick_better_kernel();
    if (limited || better) execv("/proc/self/exe", argv); /* on failure: carry on as we are */
}

/* A pthreads OpenBLAS starts its own thread pool when it is loaded, and those threads spin in
 * sched_yield for a while: in a 10 ms process on two cores they compete with emote's workers.
 * emote never uses them (its own pool calls single-threaded sgemm), so stop them. ./emote
 * keeps them from starting at all, whatever OPENBLAS_NUM_THREADS says (main.c); this is for
 * the tools, and for BLAS builds without the counters main.c sets. OpenBLAS restarts them by
 * itself if a caller asks for more threads later, or calls openblas_set_num_threads after
 * this (emote_session_new does not when the count is already 1). Weak: other BLAS builds
 * lack the symbol. */
extern void blas_thread_shutdown_(void) __attribute__((weak));

void stop_blas_threads(void) {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}
