/* emote: command dispatch. */
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
    "'emote COMMAND --help' shows each command's options and examples.\n"
    "\n"
    "Exit status: 0 success; 1 some inputs failed (the rest were processed); 2 usage error;\n"
    "3 fatal error (unusable model, unwritable output, no inputs); 4 a check failed\n"
    "(eval --min-accuracy/--min-macro-f1, diff limits).\n";

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"classify", cmd_classify}, {"eval", cmd_eval}, {"sort", cmd_sort}, {"diff", cmd_diff},
                    {"info", cmd_info}};
    choose_blas_kernel(argv);
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return EXIT_ALL_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    return cmd_classify(argc, argv); /* `emote face.png` means `emote classify face.png` */
}
