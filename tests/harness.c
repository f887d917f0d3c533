#include "harness.h"

#include <string.h>

#define MAX_TESTS 512

static struct {
    const char *name;
    test_fn fn;
} tests[MAX_TESTS];
static int num_tests;

void test_register(const char *name, test_fn fn) {
    if (num_tests < MAX_TESTS) {
        tests[num_tests].name = name;
        tests[num_tests].fn = fn;
        num_tests++;
    }
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < num_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        int failures = 0;
        tests[i].fn(&failures);
        printf("%s %s\n", failures ? "FAIL" : "ok  ", tests[i].name);
        fflush(stdout);
        if (failures) failed++; else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
