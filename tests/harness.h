/* A tiny test harness: TEST(name) { ... CHECK(cond); ... } registers a test;
 * tests/harness.c runs them all (or those whose name contains argv[1]) and prints
 * "N passed, M failed". Fixture paths are relative to the repository root. */
#ifndef EMOTE_TEST_HARNESS_H
#define EMOTE_TEST_HARNESS_H

#include <stdio.h>

typedef void (*test_fn)(int *failures);
void test_register(const char *name, test_fn fn);

#define TEST(name)                                                              \
    static void name(int *failures);                                           \
    __attribute__((constructor)) static void register_##name(void) {          \
        test_register(#name, name);                                            \
    }                                                                          \
    static void name(int *failures)

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ++*failures;                                                        \
        }                                                                       \
    } while (0)

#define CHECKF(cond, ...)                                                       \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            ++*failures;                                                        \
        }                                                                       \
    } while (0)

#endif
