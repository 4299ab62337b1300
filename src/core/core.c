/*
 * core.c — status messages, checked allocation, dtypes, half floats, file
 * mapping and atomic writes (see core.h for the contracts).
 *
 * Half-float conversions follow IEEE 754 binary16 and bfloat16 with round to
 * nearest even, as torch's .half() / .bfloat16() do.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ============================================================== errors */

static _Thread_local char err_msg[1024];

mq_status mq_fail(mq_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return st;
}

const char *mq_last_error(void) { return err_msg; }

void mq_error_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err_msg - 3) n = sizeof err_msg - 3;
    memcpy(err_msg, prefix, n);
    memcpy(err_msg + n, ": ", 2);
    size_t rest = sizeof err_msg - n - 3;
    size_t k = strlen(old);
    if (k > rest) k = rest;
    memcpy(err_msg + n + 2, old, k);
    err_msg[n + 2 + k] = 0;
}

_Noreturn void mq_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "matquant: internal error: assertion `%s` failed at %s:%d\n",
            expr, file, line);
    abort();
}

/* ========================================================== allocation */

static _Noreturn void oom(size_t n) {
    fprintf(stderr, "matquant: out of memory (allocating %zu bytes)\n", n);
    abort();
}

void *mq_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *mq_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *mq_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *mq_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mq_malloc(n);
    memcpy(d, s, n);
    return d;
}

void *mq_aligned_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) oom(n);
    return p;
}

/* Huge pages for the packed weights: a decode streams them once per token,
 * and with 4 KiB pages every 4 KiB is a TLB miss and the hardware
 * prefetchers stop at each page edge; on a 2-core Intel Xeon (3 December
 * 2026) huge pages made the 1.1B-shape decode stream 3-14% faster
 * (docs/results.md §16). Only whole pages are marked, so nothing is backed
 * beyond the buffer. */
void *mq_stream_alloc(size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return mq_aligned_alloc(n);
    void *p = NULL;
    if (posix_memalign(&p, huge, n) != 0) oom(n);
    (void)madvise(p, n / huge * huge, MADV_HUGEPAGE); /* advice only: EINVAL where THP is not built in */
    return p;
}

/* ============================================================== dtypes */

static const struct { const char *name; size_t size; } dtype_info[MQ_DTYPE_COUNT] = {
    [MQ_DTYPE_F32] = {"F32", 4},  [MQ_DTYPE_F16] = {"F16", 2},
    [MQ_DTYPE_BF16] = {"BF16", 2}, [MQ_DTYPE_F64] = {"F64", 8},
    [MQ_DTYPE_U8] = {"U8", 1},    [MQ_DTYPE_I8] = {"I8", 1},
    [MQ_DTYPE_I16] = {"I16", 2},  [MQ_DTYPE_I32] = {"I32", 4},
    [MQ_DTYPE_I64] = {"I64", 8},  [MQ_DTYPE_BOOL] = {"BOOL", 1},
};

size_t mq_dtype_size(mq_dtype t) {
    return (unsigned)t < MQ_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *mq_dtype_name(mq_dtype t) {
    return (unsigned)t < MQ_DTYPE_COUNT ? dtype_info[t].name : "?";
}

bool mq_dtype_from_name(const char *s, mq_dtype *out) {
    for (int i = 0; i < MQ_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (mq_dtype)i;
            return true;
        }
    }
    return false;
}

int64_t mq_tensor_numel(const mq_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

mq_status mq_convert_to_f32(const void *src, mq_dtype dtype, size_t n, float *dst) {
    switch (dtype) {
    case MQ_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); return MQ_OK;
    case MQ_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mq_f16_to_f32(s[i]);
        return MQ_OK;
    }
    case MQ_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = mq_bf16_to_f32(s[i]);
        return MQ_OK;
    }
    case MQ_DTYPE_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return MQ_OK;
    }
    default:
        return mq_fail(MQ_ERR_UNSUPPORTED, "dtype %s is not a float type", mq_dtype_name(dtype));
    }
}

int64_t mq_find_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (int64_t)i;
    return -1;
}

/* ========================================================= half floats */

float mq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t mq_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    uint32_t sign = (v.u >> 16) & 0x8000;
    uint32_t x = v.u & 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (x > 0x7f800000u ? 0x200 : 0));
    if (x >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (x < 0x38800000u) { /* below the smallest normal half: subnormal */
        float a = fabsf(f) * 0x1p24f; /* in units of 2^-24 */
        return (uint16_t)(sign | (uint16_t)nearbyintf(a));
    }
    uint32_t mant = x & 0x7fffff, exp = (x >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

uint16_t mq_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t rounding = 0x7fff + ((v.u >> 16) & 1);
    return (uint16_t)((v.u + rounding) >> 16);
}

/* =============================================================== files */

mq_status mq_map_file(const char *path, mq_map *m) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mq_fail(MQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return mq_fail(MQ_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return mq_fail(MQ_ERR_IO, "%s: is a directory, expected a file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return MQ_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return mq_fail(MQ_ERR_IO, "%s: cannot mmap: %s", path, strerror(errno));
    m->data = p;
    m->size = (size_t)st.st_size;
    return MQ_OK;
}

void mq_unmap(mq_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

mq_status mq_read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return mq_fail(MQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mq_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) buf = mq_realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return mq_fail(MQ_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return MQ_OK;
}

static void fsync_parent_dir(const char *path) {
    char *copy = mq_strdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

mq_status mq_atomic_open(mq_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->final_path = mq_strdup(path);
    af->tmp_path = mq_malloc(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        mq_status st = mq_fail(MQ_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        free(af->final_path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return st;
    }
    return MQ_OK;
}

mq_status mq_atomic_write(mq_atomic_file *af, const void *data, size_t len) {
    if (af->failed) return MQ_ERR_IO;
    if (len && fwrite(data, 1, len, af->f) != len) {
        af->failed = true;
        return mq_fail(MQ_ERR_IO, "%s: write failed: %s", af->tmp_path, strerror(errno));
    }
    return MQ_OK;
}

void mq_atomic_abort(mq_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->final_path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

mq_status mq_atomic_commit(mq_atomic_file *af) {
    if (af->failed) {
        mq_atomic_abort(af);
        return MQ_ERR_IO;
    }
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        mq_status st = mq_fail(MQ_ERR_IO, "%s: flush failed: %s", af->tmp_path, strerror(errno));
        mq_atomic_abort(af);
        return st;
    }
    if (fclose(af->f) != 0) {
        af->f = NULL;
        mq_status st = mq_fail(MQ_ERR_IO, "%s: close failed: %s", af->tmp_path, strerror(errno));
        mq_atomic_abort(af);
        return st;
    }
    af->f = NULL;
    if (rename(af->tmp_path, af->final_path) != 0) {
        mq_status st = mq_fail(MQ_ERR_IO, "%s: cannot rename to %s: %s", af->tmp_path,
                               af->final_path, strerror(errno));
        mq_atomic_abort(af);
        return st;
    }
    fsync_parent_dir(af->final_path);
    free(af->final_path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return MQ_OK;
}

mq_status mq_write_file_atomic(const char *path, const void *data, size_t len) {
    mq_atomic_file af;
    mq_status st = mq_atomic_open(&af, path);
    if (st) return st;
    if ((st = mq_atomic_write(&af, data, len))) {
        mq_atomic_abort(&af);
        return st;
    }
    return mq_atomic_commit(&af);
}

bool mq_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool mq_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *mq_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = mq_malloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

bool mq_has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

double mq_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
