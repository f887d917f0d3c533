/* check_model FILE...: loads each model file with every check the loader makes (exit 1 on the
 * first that fails). `make` runs it on the models it builds into the binary, whose values the
 * built-in loader then trusts (src/model.c, open_model). */
#include <stdio.h>

#include "emote.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        emote_error err;
        emote_model *m = emote_model_open(argv[i], &err);
        if (!m) {
            fprintf(stderr, "check_model: %s\n", err.message);
            return 1;
        }
        emote_model_close(m);
    }
    return 0;
}
