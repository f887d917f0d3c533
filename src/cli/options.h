/* Command-line options: each command declares every option it takes once, in a getopt_long
 * table; options.c derives the short options from it, runs getopt_long and prints our
 * messages. GNU conventions: options anywhere among the operands, "--" ends them, "-" is
 * an operand, values attached (-j2, --threads=2) or as the next word (-j 2, --threads 2),
 * and a long option may be shortened to any unambiguous prefix (--thr 2). */
#ifndef EMOTE_OPTIONS_H
#define EMOTE_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>

/* A table entry's code is its short option's character, or for a long-only option a
 * number from OPTION_LONG_ONLY on. */
enum { OPTION_LONG_ONLY = 256 };

#define HELP_OPTION {"help", no_argument, NULL, 'h'}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const struct option *options; /* every option it takes, --help too; ends with {0} */
} command;

/* The commands, NULL-terminated; the first is the default (`emote face.png`). */
extern const command *const COMMANDS[];
const command *find_command(const char *name);
/* The option table of the command named so, or NULL. */
const struct option *command_options(const char *name);

/* What options_next returns besides an option's code. */
enum { OPTIONS_END = -1, OPTIONS_OPERAND = 1, OPTIONS_ERROR = '?' };

typedef struct {
    const command *cmd;
    int argc;
    char **argv;
    char shorts[256]; /* getopt_long's optstring, derived from cmd->options */
    int rest;         /* once getopt_long is done (at "--" or the end): the next operand left */
    char name[64];    /* the option just read, as the user spelt it: "-j" or "--threads" */
    char *value;      /* its value, or the operand */
} option_parser;

/* Parses argv[1..argc) (argv[0] is the command's name) by cmd->options. */
void options_start(option_parser *p, const command *cmd, int argc, char **argv);
/* The next option's code (name and value in p), OPTIONS_OPERAND (the operand in
 * p->value), OPTIONS_END, or OPTIONS_ERROR once a usage error is printed. */
int options_next(option_parser *p);

/* Value checks with usage errors that name the option (p->name). */
bool parse_int_option(const char *opt, const char *value, int min, int max, int *out);
bool parse_double_option(const char *opt, const char *value, double min, double max, double *out);
/* A model, as a built-in name or a file: never empty (an empty -m would quietly mean the
 * default model). `what` names the option or operand in the message. */
bool parse_model_option(const char *what, const char *value, const char **out);

#endif
