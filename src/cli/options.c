/* Command-line options through getopt_long (see options.h), with emote's messages. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const command *const COMMANDS[] = {&classify_command, &eval_command, &sort_command, &diff_command, &info_command,
                                   &adapt_command, NULL};

const command *find_command(const char *name) {
    for (int i = 0; COMMANDS[i]; i++)
        if (!strcmp(COMMANDS[i]->name, name)) return COMMANDS[i];
    return NULL;
}

const struct option *command_options(const char *name) {
    const command *c = find_command(name);
    return c ? c->options : NULL;
}

/* "-:" then "x" or "x:" for each option with a short form. The leading '-' hands operands
 * back in order (code 1), whatever POSIXLY_CORRECT says; ':' reports a missing value apart. */
static void derive_shorts(const struct option *table, char *out, size_t size) {
    size_t n = 0;
    out[n++] = '-';
    out[n++] = ':';
    for (; table->name && n + 3 <= size; table++) {
        if (table->val >= OPTION_LONG_ONLY) continue;
        out[n++] = (char)table->val;
        if (table->has_arg == required_argument) out[n++] = ':';
    }
    out[n] = '\0';
}

void options_start(option_parser *p, const command *cmd, int argc, char **argv) {
    *p = (option_parser){.cmd = cmd, .argc = argc, .argv = argv};
    derive_shorts(cmd->options, p->shorts, sizeof p->shorts);
    opterr = 0; /* our messages, not getopt's */
    optind = 0; /* 0, not 1: glibc starts a new parse */
}

static const struct option *option_with_code(const struct option *table, int code) {
    for (; table->name; table++)
        if (table->val == code) return table;
    return NULL;
}

/* The option as spelt: "-j", or "--threads" also for an abbreviation such as "--thr". */
static void name_option(option_parser *p, bool is_long, int code) {
    const struct option *o = is_long ? option_with_code(p->cmd->options, code) : NULL;
    if (o) snprintf(p->name, sizeof p->name, "--%s", o->name);
    else snprintf(p->name, sizeof p->name, "-%c", code);
}

/* A long option that getopt_long did not take: unknown, or a prefix of several. */
static void report_unknown_long(const option_parser *p, const char *word) {
    const char *typed = word + 2;
    size_t length = strcspn(typed, "=");
    int matches = 0;
    for (const struct option *o = p->cmd->options; o->name; o++) matches += !strncmp(o->name, typed, length);
    if (matches < 2) {
        fprintf(stderr, "emote: unknown option '--%.*s' (see emote %s --help)\n", (int)length, typed, p->cmd->name);
        return;
    }
    fprintf(stderr, "emote: option '--%.*s' is ambiguous; it could be", (int)length, typed);
    int listed = 0;
    for (const struct option *o = p->cmd->options; o->name; o++) {
        if (strncmp(o->name, typed, length)) continue;
        listed++;
        fprintf(stderr, "%s--%s", listed == 1 ? " " : listed == matches ? " or " : ", ", o->name);
    }
    fputc('\n', stderr);
}

int options_next(option_parser *p) {
    if (p->rest) {
        if (p->rest >= p->argc) return OPTIONS_END;
        p->value = p->argv[p->rest++];
        return OPTIONS_OPERAND;
    }
    /* The word getopt_long reads next: a long option starts with "--" (mid-cluster, as
     * in "-qj2", the word starts with a single '-'). optind 0 means 1, a new parse. */
    const char *word = p->argv[optind > 0 ? optind : 1];
    bool is_long = word && word[0] == '-' && word[1] == '-' && word[2];
    int index = -1;
    int code = getopt_long(p->argc, p->argv, p->shorts, p->cmd->options, &index);
    p->value = optarg;
    switch (code) {
    case -1: /* "--" or the end: the rest are operands */
        p->rest = optind;
        return options_next(p);
    case OPTIONS_OPERAND:
        return code;
    case ':':
        name_option(p, is_long, optopt);
        fprintf(stderr, "emote: %s needs a value\n", p->name);
        return OPTIONS_ERROR;
    case '?':
        name_option(p, is_long, optopt);
        if (is_long && optopt) fprintf(stderr, "emote: %s takes no value\n", p->name); /* --tta=1 */
        else if (is_long) report_unknown_long(p, word);
        else fprintf(stderr, "emote: unknown option '%s' (see emote %s --help)\n", p->name, p->cmd->name);
        return OPTIONS_ERROR;
    default:
        name_option(p, index >= 0, code);
        return code;
    }
}

bool parse_int_option(const char *opt, const char *value, int min, int max, int *out) {
    char *end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < min || v > max) {
        fprintf(stderr, "emote: %s needs an integer from %d to %d, not '%s'\n", opt, min, max, value ? value : "");
        return false;
    }
    *out = (int)v;
    return true;
}

bool parse_double_option(const char *opt, const char *value, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    if (!value || !*value || *end || errno || !(v >= min && v <= max)) {
        fprintf(stderr, "emote: %s needs a number from %g to %g, not '%s'\n", opt, min, max, value ? value : "");
        return false;
    }
    *out = v;
    return true;
}

bool parse_model_option(const char *what, const char *value, const char **out) {
    if (!value || !*value) {
        fprintf(stderr, "emote: %s needs a built-in model's name or a model file, not an empty string\n", what);
        return false;
    }
    *out = value;
    return true;
}
