/* The option tables (src/cli/options.h) against the documentation: every option that a
 * command's parser accepts is named in `emote COMMAND --help`, in the OPTIONS section of
 * the manual page and in README.md, short forms included; and no table says anything twice. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "harness.h"

#define MAN_PAGE "src/cli/emote.1"
#define README "README.md"

static char *read_stream(FILE *f) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    int c;
    while (out && (c = fgetc(f)) != EOF) fputc(c, out);
    if (out) fclose(out);
    return text;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    char *text = f ? read_stream(f) : NULL;
    if (f) fclose(f);
    return text;
}

/* What `emote COMMAND --help` prints: the command run in-process, stdout sent to a file. */
static char *help_text(const command *c) {
    char name[32], help[] = "--help";
    snprintf(name, sizeof name, "%s", c->name);
    char *argv[] = {name, help, NULL};
    FILE *capture = tmpfile();
    if (!capture) return NULL;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(capture), STDOUT_FILENO);
    int status = c->run(2, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(capture);
    char *text = status == EXIT_ALL_OK ? read_stream(capture) : NULL;
    fclose(capture);
    return text;
}

/* The manual page's OPTIONS section as plain text: roff's "\-" read as '-', font
 * changes ("\fB") dropped. */
static char *man_options(void) {
    char *man = read_file(MAN_PAGE);
    char *start = man ? strstr(man, "\n.SH OPTIONS") : NULL;
    if (!start) {
        free(man);
        return NULL;
    }
    char *end = strstr(start + 1, "\n.SH "), *out = man;
    if (!end) end = start + strlen(start);
    for (char *s = start; s < end;) {
        if (s[0] == '\\' && s[1] == '-') *out++ = '-', s += 2;
        else if (s[0] == '\\' && s[1] == 'f' && s[2]) s += 3;
        else *out++ = *s++;
    }
    *out = '\0';
    return man;
}

static bool is_word_char(char c) { return c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* text names option (e.g. "--no-exif", "-0") as a word of its own: not inside "--no-exifs" or "x-0". */
static bool mentions(const char *text, const char *option) {
    size_t n = strlen(option);
    for (const char *s = text; (s = strstr(s, option)); s++)
        if ((s == text || !is_word_char(s[-1])) && !is_word_char(s[n])) return true;
    return false;
}

TEST(options_every_option_is_documented) {
    char *man = man_options(), *readme = read_file(README);
    CHECKF(man && readme, "cannot read %s's OPTIONS section or %s", MAN_PAGE, README);
    for (int i = 0; man && readme && COMMANDS[i]; i++) {
        const command *c = COMMANDS[i];
        char *help = help_text(c);
        CHECKF(help != NULL, "emote %s --help failed", c->name);
        for (const struct option *o = c->options; help && o->name; o++) {
            char spellings[2][64];
            snprintf(spellings[0], sizeof spellings[0], "--%s", o->name);
            snprintf(spellings[1], sizeof spellings[1], "-%c", o->val);
            for (int k = 0; k < (o->val < OPTION_LONG_ONLY ? 2 : 1); k++) {
                const char *opt = spellings[k];
                CHECKF(mentions(help, opt), "%s is not in `emote %s --help`", opt, c->name);
                CHECKF(mentions(man, opt), "emote %s %s is not in %s's OPTIONS section", c->name, opt, MAN_PAGE);
                CHECKF(mentions(readme, opt), "emote %s %s is not in %s", c->name, opt, README);
            }
        }
        free(help);
    }
    free(man);
    free(readme);
}

TEST(options_tables_say_nothing_twice) {
    for (int i = 0; COMMANDS[i]; i++) {
        const struct option *table = COMMANDS[i]->options;
        CHECKF(command_options(COMMANDS[i]->name) == table, "command_options(\"%s\")", COMMANDS[i]->name);
        for (const struct option *a = table; a->name; a++) {
            CHECKF(a->flag == NULL && a->val > 1 && a->val != '?' && a->val != ':' && a->val != 'W',
                   "emote %s --%s: code %d is reserved", COMMANDS[i]->name, a->name, a->val);
            for (const struct option *b = a + 1; b->name; b++)
                CHECKF(strcmp(a->name, b->name) && a->val != b->val, "emote %s: --%s and --%s share a name or code",
                       COMMANDS[i]->name, a->name, b->name);
        }
    }
}
