/* check.h: the assertions of the C unit tests; each prints both values. */
#ifndef GRPCPROM_CHECK_H
#define GRPCPROM_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_INT(a, b)                                                           \
    do {                                                                          \
        long long va_ = (long long)(a), vb_ = (long long)(b);                     \
        if (va_ != vb_) {                                                         \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,  \
                    __LINE__, #a, va_, #b, vb_);                                  \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_STR(a, b)                                                           \
    do {                                                                          \
        const char *sa_ = (a), *sb_ = (b);                                        \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                              \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,    \
                    __LINE__, #a, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");    \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

/* Ends a test program: exit status 1 when any check failed. */
#define CHECK_DONE()                                                              \
    do {                                                                          \
        if (check_failures)                                                       \
            fprintf(stderr, "%d check(s) failed\n", check_failures);              \
        return check_failures ? 1 : 0;                                            \
    } while (0)

#endif
