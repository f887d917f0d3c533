/* emote: command dispatch. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    "\n"
    "'emote --version' shows the version, commit, OpenBLAS core, image decoders and built-in model.\n"
    "'emote COMMAND --help' shows each command's options and examples. An option's value\n"
    "may follow as the next word, attached to a short option (-j2) or after '=' (--threads=2).\n"
    "\n"
    "Exit status: 0 success; 1 some inputs failed (the rest were processed); 2 usage error;\n"
    "3 fatal error (unusable model, unwritable output, no inputs); 4 a check failed\n"
    "(eval --min-accuracy/--min-macro-f1, diff limits).\n";

/* The option of any command named by name[0..length) if it takes a value, else NULL. */
static const char *option_with_value(const char *name, size_t length) {
    static const char *const names[] = {"-m", "--model", "-b", "--batch", "-j", "--threads", "--shard", "-f",
                                        "--format", "-k", "--top", "--into", "--min-confidence", "--manifest",
                                        "--min-accuracy", "--min-macro-f1", "--plot", "--max-changed",
                                        "--tolerance", "-o", "--output", "--readers", "--predictions"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == length && !strncmp(names[i], name, length)) return names[i];
    return NULL;
}

/* Rewrites "-j2" as "-j" "2" and "--threads=2" as "--threads" "2" (options that take a
 * value only; everything after "--" is left alone), so commands see one spelling. */
static char **split_option_values(int argc, char **argv, int *new_argc) {
    char **out = calloc((size_t)argc * 2 + 1, sizeof *out);
    if (!out) return NULL;
    int n = 0;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (i == 0 || options_done || a[0] != '-' || a[1] == '\0') {
            out[n++] = a;
            continue;
        }
        if (!strcmp(a, "--")) options_done = true;
        char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        const char *short_name = a[1] != '-' && a[2] != '\0' ? option_with_value(a, 2) : NULL;
        if (eq && option_with_value(a, (size_t)(eq - a))) {
            *eq = '\0'; /* argv strings are ours to modify */
            out[n++] = a;
            out[n++] = eq + 1;
        } else if (short_name) {
            out[n++] = (char *)short_name; /* commands only read their arguments */
            out[n++] = a + 2;
        } else {
            out[n++] = a;
        }
    }
    *new_argc = n;
    return out;
}

static int run_command(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"classify", cmd_classify}, {"eval", cmd_eval}, {"sort", cmd_sort}, {"diff", cmd_diff},
                    {"info", cmd_info}};
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) return cmd_version();
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return EXIT_ALL_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    return cmd_classify(argc, argv); /* `emote face.png` means `emote classify face.png` */
}

int main(int argc, char **argv) {
    choose_blas_kernel(argv);
    stop_blas_threads();
    int split_argc;
    char **split = split_option_values(argc, argv, &split_argc);
    int status = split ? run_command(split_argc, split) : run_command(argc, argv);
    free(split);
    return status;
}
