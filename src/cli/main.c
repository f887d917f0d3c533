/* emote: command dispatch, and the standard streams' checks around every command. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* A pthreads OpenBLAS starts its own thread pool from its constructor, when it is loaded,
 * one thread per core but one; emote never uses it (its own pool calls single-threaded
 * sgemm), and those threads map a 128 MiB buffer each and spin in sched_yield until
 * stop_blas_threads ends them: on two cores they cost a short process a quarter of its CPU
 * time, and its start waits for them to be scheduled. OPENBLAS_NUM_THREADS=1 would keep
 * them from starting, but it is read in that constructor, before main, and this process's
 * environment cannot be changed before then (glibc sets `environ` after .preinit_array).
 * What the variable would do is done instead: the program's .preinit_array runs before any
 * constructor (a shared library's, or OpenBLAS's linked in: Makefile, BLAS_STATIC), and sets
 * OpenBLAS's thread counts (blas_get_cpu_number would set both to 1 from the variable); the
 * constructor then finds them set and starts no thread.
 * Weak: other BLAS builds (OpenBLAS's serial one) lack them, and stop_blas_threads still
 * stops whatever started. */
extern int blas_cpu_number __attribute__((weak));
extern int blas_num_threads __attribute__((weak));

/* Not instrumented: it may run before a sanitizer's runtime has set itself up. */
__attribute__((no_sanitize("address", "undefined"))) static void openblas_one_thread(int argc, char **argv,
                                                                                    char **envp) {
    (void)argc, (void)argv, (void)envp;
    if (&blas_cpu_number && &blas_num_threads && blas_cpu_number == 0 && blas_num_threads == 0)
        blas_cpu_number = blas_num_threads = 1;
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_openblas)(int, char **, char **) =
    openblas_one_thread;

static const char usage[] =
    "usage: emote [COMMAND] [options] ...\n"
    "\n"
    "Facial expression classifier for face crops (default model: 48x48 grayscale, FER2013 labels).\n"
    "\n"
    "Commands:\n"
    "  classify PATH...        print per-image emotion probabilities (the default command)\n"
    "  eval DIR                accuracy, per-class precision/recall/F1 and confusion matrix on DIR/<label>/*\n"
    "  sort PATH... --into D   file images into D/<label>/\n"
    "  diff OLD NEW            compare two jsonl prediction files\n"
    "  info [MODEL]            labels, input, parameters, FLOPs and provenance of a model\n"
    "  adapt DIR -o MODEL      fit a new head on DIR/<label>/* (any labels) and write it as MODEL\n"
    "\n"
    "'emote --version' shows the version, commit, OpenBLAS core, image decoders and built-in model.\n"
    "'emote COMMAND --help' shows each command's options and examples. Options may come\n"
    "before or after the paths; '--' ends them. An option's value follows as the next word,\n"
    "attached to a short option (-j2) or after '=' (--threads=2). A long option may be\n"
    "shortened to any prefix that names only one option (--thr 2 for --threads 2).\n"
    "\n"
    "Exit status: 0 success; 1 some inputs failed (the rest were processed); 2 usage error;\n"
    "3 fatal error (unusable model, unwritable output, no inputs; a failed write to standard\n"
    "output gives 3 whatever else happened); 4 a check failed (eval --min-accuracy/--min-macro-f1,\n"
    "diff limits).\n";

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) return cmd_version();
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return EXIT_ALL_OK;
    }
    const command *c = find_command(argv[1]);
    if (c) return c->run(argc - 1, argv + 1);
    return COMMANDS[0]->run(argc, argv); /* `emote face.png` means `emote classify face.png` */
}

/* A standard stream closed at start (`>&-`) is taken by /dev/null opened the wrong way
 * round: using it then fails (EBADF) as a closed one does, and no file that emote opens
 * later (-o FILE, a plot) can land on its number and receive the output meant for it. */
static void hold_closed_standard_streams(void) {
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
        int held = open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
        if (held >= 0 && held != fd) close(held); /* not the lowest free number: cannot be */
    }
}

/* What a command printed must have reached stdout: a failed write or close is an error
 * (exit 3), whatever the command returned. */
static int close_stdout(int status) {
    bool failed_before = ferror(stdout);
    errno = 0;
    bool closed = fclose(stdout) == 0;
    if (closed && !failed_before) return status;
    fprintf(stderr, "emote: cannot write to standard output: %s\n",
            !closed && errno ? strerror(errno) : "an earlier write failed");
    return EXIT_FATAL;
}

int main(int argc, char **argv) {
    hold_closed_standard_streams();
    choose_blas_kernel(argv);
    stop_blas_threads();
    return close_stdout(run_command(argc, argv));
}
