/*
 * gguf_write.c — write GGUF v3 files with F32/F16 tensors (to hand models to
 * llama.cpp): header, metadata key/values, tensor infos, padding to the
 * alignment (general.alignment if set as u32, else 32), tensor data, each
 * tensor's offset a multiple of the alignment. Written atomically.
 *
 * Not here: quantized tensor types (llama.cpp's quantize tool does that from
 * an F16/F32 file); big-endian output.
 * Reference: ggml docs/gguf.md.
 */
#include "io/gguf_internal.h"

#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = mq_realloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void put_str(buf *b, const char *s) {
    size_t n = strlen(s);
    put_u64(b, n);
    buf_put(b, s, n);
}

typedef struct {
    char *key;
    buf val; /* type id + encoded value, as in the file */
} wkv;

typedef struct {
    char *name;
    uint32_t type;
    int ndim;
    int64_t ne[MQ_MAX_DIMS];
    void *data;
    size_t nbytes;
} wtensor;

struct mq_gguf_writer {
    wkv *kv;
    int n_kv;
    wtensor *t;
    int n_t;
    char *err; /* first error of a set_* call, reported by mq_gguf_write */
};

/* A new, empty writer (never NULL). Free with mq_gguf_writer_free. */
mq_gguf_writer *mq_gguf_writer_new(void) { return mq_calloc(1, sizeof(mq_gguf_writer)); }

/* Frees the writer and its copies of keys, values and tensor data. */
void mq_gguf_writer_free(mq_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w->err);
    free(w);
}

static void set_err(mq_gguf_writer *w, const char *msg, const char *what) {
    if (w->err) return;
    size_t n = strlen(msg) + strlen(what) + 8;
    w->err = mq_malloc(n);
    snprintf(w->err, n, msg, what);
}

/* Starts a new key/value pair, or returns NULL (error recorded) for a NULL,
 * empty or repeated key. */
static buf *new_kv(mq_gguf_writer *w, const char *key, uint32_t type) {
    if (!key || !*key) {
        set_err(w, "empty metadata key%s", "");
        return NULL;
    }
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            set_err(w, "metadata key '%s' set twice", key);
            return NULL;
        }
    w->kv = mq_realloc(w->kv, (size_t)(w->n_kv + 1) * sizeof *w->kv);
    wkv *kv = &w->kv[w->n_kv++];
    kv->key = mq_strdup(key);
    kv->val = (buf){0};
    put_u32(&kv->val, type);
    return &kv->val;
}

/* Setters: add one key/value pair (copied). A repeated key is an error that
 * mq_gguf_write reports. */
void mq_gguf_set_u32(mq_gguf_writer *w, const char *key, uint32_t v) {
    buf *b = new_kv(w, key, MQ_GGUF_U32);
    if (b) put_u32(b, v);
}
void mq_gguf_set_i32(mq_gguf_writer *w, const char *key, int32_t v) {
    buf *b = new_kv(w, key, MQ_GGUF_I32);
    if (b) buf_put(b, &v, 4);
}
void mq_gguf_set_f32(mq_gguf_writer *w, const char *key, float v) {
    buf *b = new_kv(w, key, MQ_GGUF_F32);
    if (b) buf_put(b, &v, 4);
}
void mq_gguf_set_bool(mq_gguf_writer *w, const char *key, bool v) {
    buf *b = new_kv(w, key, MQ_GGUF_BOOL);
    uint8_t x = v ? 1 : 0;
    if (b) buf_put(b, &x, 1);
}
void mq_gguf_set_str(mq_gguf_writer *w, const char *key, const char *v) {
    buf *b = new_kv(w, key, MQ_GGUF_STRING);
    if (b) put_str(b, v ? v : "");
}
void mq_gguf_set_arr_str(mq_gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    buf *b = new_kv(w, key, MQ_GGUF_ARRAY);
    if (!b) return;
    put_u32(b, MQ_GGUF_STRING);
    put_u64(b, n);
    for (uint64_t i = 0; i < n; i++) put_str(b, v[i] ? v[i] : "");
}
void mq_gguf_set_arr_f32(mq_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    buf *b = new_kv(w, key, MQ_GGUF_ARRAY);
    if (!b) return;
    put_u32(b, MQ_GGUF_F32);
    put_u64(b, n);
    for (uint64_t i = 0; i < n; i++) buf_put(b, &v[i], 4);
}
void mq_gguf_set_arr_i32(mq_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    buf *b = new_kv(w, key, MQ_GGUF_ARRAY);
    if (!b) return;
    put_u32(b, MQ_GGUF_I32);
    put_u64(b, n);
    for (uint64_t i = 0; i < n; i++) buf_put(b, &v[i], 4);
}

/* Adds a tensor (see gguf.h). MQ_ERR_ARG for a bad name, type, ndim or dims
 * (the writer is unchanged then). */
mq_status mq_gguf_add_tensor(mq_gguf_writer *w, const char *name, const float *data, int ndim,
                             const int64_t *ne, uint32_t type) {
    if (!name || !*name) return mq_fail(MQ_ERR_ARG, "gguf writer: empty tensor name");
    if (type != MQ_GGML_F32 && type != MQ_GGML_F16)
        return mq_fail(MQ_ERR_ARG, "gguf writer: tensor '%s': type %s cannot be written (F32 or F16)", name,
                       mq_ggml_type_name(type));
    if (ndim < 1 || ndim > MQ_MAX_DIMS)
        return mq_fail(MQ_ERR_ARG, "gguf writer: tensor '%s': %d dimensions (1..%d)", name, ndim, MQ_MAX_DIMS);
    size_t numel = 1, es = type == MQ_GGML_F32 ? 4 : 2, nbytes;
    for (int d = 0; d < ndim; d++)
        if (ne[d] < 0 || !mq_mul_ok(numel, (size_t)ne[d], &numel))
            return mq_fail(MQ_ERR_ARG, "gguf writer: tensor '%s': bad dimension ne[%d] = %lld", name, d,
                           (long long)ne[d]);
    if (!mq_mul_ok(numel, es, &nbytes))
        return mq_fail(MQ_ERR_ARG, "gguf writer: tensor '%s': size overflows", name);
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return mq_fail(MQ_ERR_ARG, "gguf writer: tensor '%s' added twice", name);
    w->t = mq_realloc(w->t, (size_t)(w->n_t + 1) * sizeof *w->t);
    wtensor *t = &w->t[w->n_t++];
    *t = (wtensor){.name = mq_strdup(name), .type = type, .ndim = ndim, .nbytes = nbytes};
    for (int d = 0; d < MQ_MAX_DIMS; d++) t->ne[d] = d < ndim ? ne[d] : 1;
    t->data = mq_malloc(nbytes ? nbytes : 1);
    if (type == MQ_GGML_F32) {
        if (nbytes) memcpy(t->data, data, nbytes);
    } else {
        uint16_t *h = t->data;
        for (size_t i = 0; i < numel; i++) h[i] = mq_f32_to_f16(data[i]);
    }
    return MQ_OK;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Writes the file atomically (see gguf.h). The writer stays valid (it can be
 * written again or freed). Errors name the path, or the key of a failed
 * set_* call. */
mq_status mq_gguf_write(mq_gguf_writer *w, const char *path) {
    if (w->err) return mq_fail(MQ_ERR_ARG, "%s: %s", path, w->err);
    size_t alignment = 32;
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, "general.alignment")) {
            uint32_t type, a;
            memcpy(&type, w->kv[i].val.p, 4);
            memcpy(&a, w->kv[i].val.p + 4, w->kv[i].val.n >= 8 ? 4 : 0);
            if (type != MQ_GGUF_U32 || w->kv[i].val.n != 8 || !a || (a & (a - 1)) || a > 65536)
                return mq_fail(MQ_ERR_ARG, "%s: general.alignment must be a u32 power of two <= 65536", path);
            alignment = a;
        }
    buf h = {0};
    buf_put(&h, "GGUF", 4);
    put_u32(&h, 3);
    put_u64(&h, (uint64_t)w->n_t);
    put_u64(&h, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kv[i].key);
        buf_put(&h, w->kv[i].val.p, w->kv[i].val.n);
    }
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&h, t->name);
        put_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, t->type);
        put_u64(&h, off);
        off = align_up(off + t->nbytes, alignment);
    }
    static const uint8_t zeros[64];
    size_t pad = align_up(h.n, alignment) - h.n;
    mq_atomic_file af;
    mq_status st = mq_atomic_open(&af, path);
    if (st) {
        free(h.p);
        return st;
    }
    mq_atomic_write(&af, h.p, h.n);
    for (; pad; pad -= pad > 64 ? 64 : pad) mq_atomic_write(&af, zeros, pad > 64 ? 64 : pad);
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        mq_atomic_write(&af, t->data, t->nbytes);
        for (pad = align_up(t->nbytes, alignment) - t->nbytes; pad; pad -= pad > 64 ? 64 : pad)
            mq_atomic_write(&af, zeros, pad > 64 ? 64 : pad);
    }
    free(h.p);
    return mq_atomic_commit(&af);
}
