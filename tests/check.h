/*
 * check.h — the tiny test harness every tests/test_*.c includes.
 *
 * CHECK records a pass or a failure (with file:line and a message); the
 * program ends with check_done(), which prints "<name>: N passed, N failed"
 * and returns the exit code (the verdict). SKIP prints why a part did not run.
 * CHECK_CLOSE compares arrays with |a-b| <= atol + rtol*|b| and names the
 * worst element on failure.
 */
#ifndef MQ_CHECK_H
#define MQ_CHECK_H

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (cond) {                                                           \
            check_passed++;                                                   \
        } else {                                                              \
            check_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
        }                                                                     \
    } while (0)

#define SKIP(...)                                                             \
    do {                                                                      \
        fprintf(stderr, "SKIP: ");                                            \
        fprintf(stderr, __VA_ARGS__);                                         \
        fprintf(stderr, "\n");                                                \
    } while (0)

/* Returns true when all n elements are close; on failure prints the worst. */
static inline int check_close_f32(const char *what, const float *a, const float *b, size_t n,
                                  double atol, double rtol, const char *file, int line) {
    size_t worst = 0;
    double worst_excess = -1e300;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double lim = atol + rtol * fabs((double)b[i]);
        if (!(d <= lim)) ok = 0;
        double ex = (d != d) ? 1e300 : d - lim;
        if (ex > worst_excess) { worst_excess = ex; worst = i; }
    }
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "FAIL %s:%d: %s: element %zu of %zu: got %.7g, want %.7g (atol %g rtol %g)\n",
                file, line, what, worst, n, a[worst], b[worst], atol, rtol);
    }
    return ok;
}
#define CHECK_CLOSE(what, a, b, n, atol, rtol) \
    check_close_f32(what, a, b, n, atol, rtol, __FILE__, __LINE__)

static inline int check_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

/* ../shared/data, or $MQ_SHARED_DATA; NULL (after a SKIP line) if absent. */
static inline const char *check_shared_data(void) {
    const char *d = getenv("MQ_SHARED_DATA");
    if (!d) d = "../shared/data";
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
        SKIP("shared data directory %s not found; tests that need it are skipped", d);
        return NULL;
    }
    return d;
}

/* Builds "<dir>/<rel>" in a static buffer (one at a time). */
static inline const char *check_path(const char *dir, const char *rel) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
    return buf[k];
}

/* A JSON file parsed with cJSON (the library's mq_read_file), NULL if
 * unreadable or malformed. */
static inline cJSON *check_read_json(const char *path) {
    char *text;
    size_t len;
    if (mq_read_file(path, &text, &len)) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

#endif
