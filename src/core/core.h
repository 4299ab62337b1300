/*
 * core.h — shared types of matquant: status codes and error messages,
 * invariants, overflow-checked sizes, tensors, dtypes, file mapping,
 * half-precision conversion and atomic writes.
 *
 * Not here: anything model- or format-specific (src/io, src/nn).
 * Every library function that can fail returns an mq_status and leaves a
 * one-line message (naming the file, tensor or key at fault) that
 * mq_last_error() returns; the library never calls exit().
 */
#ifndef MQ_CORE_H
#define MQ_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- status */

typedef enum {
    MQ_OK = 0,
    MQ_ERR_IO,          /* cannot open/read/write a file */
    MQ_ERR_FORMAT,      /* a file is malformed (header, offsets, JSON, ...) */
    MQ_ERR_UNSUPPORTED, /* well-formed but not something we handle */
    MQ_ERR_NOMEM,       /* allocation failed */
    MQ_ERR_ARG,         /* bad argument or option from the caller */
    MQ_ERR_NUMERIC      /* NaN/Inf in a tensor or a computation */
} mq_status;

/* Records a formatted message for the calling thread and returns st, so that
 * error paths read `return mq_fail(MQ_ERR_FORMAT, "%s: bad header", path);`. */
mq_status mq_fail(mq_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The last message recorded by mq_fail on this thread ("" if none). */
const char *mq_last_error(void);
/* Prefix the current message with "prefix: " (for adding context upstream). */
void mq_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Always-on invariant check (never compiled out, unlike assert). */
#define MQ_ASSERT(cond)                                                       \
    do {                                                                      \
        if (!(cond)) mq_assert_fail(#cond, __FILE__, __LINE__);               \
    } while (0)
_Noreturn void mq_assert_fail(const char *expr, const char *file, int line);

/* ------------------------------------------------------- checked sizes */

/* *out = a * b; false (and *out untouched) on overflow. */
static inline bool mq_mul_ok(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}
static inline bool mq_add_ok(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

/* malloc/calloc that never return NULL silently: on failure they abort with a
 * message (out of memory is not recoverable input). Use for internal
 * allocations whose size is already validated. */
void *mq_malloc(size_t n);
void *mq_calloc(size_t n, size_t size);
void *mq_realloc(void *p, size_t n);
char *mq_strdup(const char *s);
/* 64-byte aligned allocation, freed with free(). */
void *mq_aligned_alloc(size_t n);
/* For a large buffer read as one stream (packed weights): from 2 MiB up,
 * 2 MiB aligned and the whole 2 MiB pages in it marked for transparent huge
 * pages (madvise MADV_HUGEPAGE; where the kernel has them off, a plain
 * aligned buffer); below, as mq_aligned_alloc. Freed with free(). */
void *mq_stream_alloc(size_t n);

/* ---------------------------------------------------------------- dtypes */

typedef enum {
    MQ_DTYPE_F32 = 0,
    MQ_DTYPE_F16,
    MQ_DTYPE_BF16,
    MQ_DTYPE_F64,
    MQ_DTYPE_U8,
    MQ_DTYPE_I8,
    MQ_DTYPE_I16,
    MQ_DTYPE_I32,
    MQ_DTYPE_I64,
    MQ_DTYPE_BOOL,
    MQ_DTYPE_COUNT
} mq_dtype;

size_t mq_dtype_size(mq_dtype t);
const char *mq_dtype_name(mq_dtype t);          /* "F32", "BF16", ... (safetensors spelling) */
bool mq_dtype_from_name(const char *s, mq_dtype *out);

#define MQ_MAX_DIMS 4

/* A view of a tensor stored somewhere else (usually an mmap'ed file). */
typedef struct {
    const char *name;
    mq_dtype dtype;
    int ndim;
    int64_t shape[MQ_MAX_DIMS]; /* row-major, shape[ndim-1] varies fastest */
    const void *data;
    size_t nbytes;
} mq_tensor;

int64_t mq_tensor_numel(const mq_tensor *t);

/* Convert n elements of a float tensor (F32/F16/BF16/F64) to fp32.
 * Returns MQ_ERR_UNSUPPORTED for other dtypes. */
mq_status mq_convert_to_f32(const void *src, mq_dtype dtype, size_t n, float *dst);
/* Index of the first NaN/Inf in x[0..n), or -1. */
int64_t mq_find_nonfinite(const float *x, size_t n);

/* ---------------------------------------------------------- half floats */

float mq_f16_to_f32(uint16_t h);
uint16_t mq_f32_to_f16(float f);   /* round to nearest even */
static inline float mq_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
uint16_t mq_f32_to_bf16(float f);  /* round to nearest even, NaN kept */

/* -------------------------------------------------------------- files */

typedef struct {
    const uint8_t *data;
    size_t size;
} mq_map;

/* Map a whole file read-only. An empty file maps to data=NULL, size=0. */
mq_status mq_map_file(const char *path, mq_map *m);
void mq_unmap(mq_map *m);

/* Read a whole file into a NUL-terminated malloc'ed buffer. */
mq_status mq_read_file(const char *path, char **out, size_t *len);

/* Write `len` bytes to path atomically: path.tmp.<pid>, fsync, rename,
 * fsync the directory. On failure nothing exists under `path` that wasn't
 * there before. */
mq_status mq_write_file_atomic(const char *path, const void *data, size_t len);

/* Streaming atomic writer, for files too large to hold in memory. */
typedef struct {
    FILE *f;
    char *final_path;
    char *tmp_path;
    bool failed;
} mq_atomic_file;
mq_status mq_atomic_open(mq_atomic_file *af, const char *path);
mq_status mq_atomic_write(mq_atomic_file *af, const void *data, size_t len);
mq_status mq_atomic_commit(mq_atomic_file *af); /* fsync + rename; closes */
void mq_atomic_abort(mq_atomic_file *af);       /* removes the temp file */

bool mq_is_dir(const char *path);
bool mq_file_exists(const char *path);
/* join dir + "/" + name into a malloc'ed string */
char *mq_path_join(const char *dir, const char *name);
bool mq_has_suffix(const char *s, const char *suffix);

/* Milliseconds of a monotonic clock. */
double mq_now_ms(void);

#endif
