/*
 * gguf.c — GGUF v2/v3 reader: header, metadata, tensor infos, validation
 * against the file size (see gguf.h), metadata getters.
 * Reference: ggml docs/gguf.md (layout and type ids); all integers are
 * little-endian, strings are u64 length + bytes (no NUL).
 *
 * Not here: dequantization (gguf_dequant.c), writing (gguf_write.c),
 * big-endian GGUF files, GGUF v1 (its 32-bit counts predate every model we
 * read), nested arrays.
 */
#include "io/gguf_internal.h"

#include <string.h>

typedef struct {
    const char *key;   /* NUL-terminated copy */
    uint32_t type;
    const uint8_t *val; /* into the map */
    /* arrays */
    uint32_t arr_type;
    uint64_t arr_n;
    const uint8_t **arr_str; /* string arrays: pointer to each element's length prefix */
} kv_t;

struct mq_gguf {
    char *path;
    mq_map map;
    uint32_t version;
    kv_t *kv;
    int n_kv;
    mq_gguf_tensor *t;
    int n_t;
};

typedef struct {
    const uint8_t *p, *end;
    const char *path;
    mq_status st;
} reader;

static bool need(reader *r, uint64_t n, const char *what) {
    if (r->st) return false;
    if ((uint64_t)(r->end - r->p) < n) {
        r->st = mq_fail(MQ_ERR_FORMAT, "%s: truncated: %s needs %llu bytes, %zu left", r->path, what,
                        (unsigned long long)n, (size_t)(r->end - r->p));
        return false;
    }
    return true;
}

static uint32_t rd_u32(reader *r, const char *what) {
    uint32_t v = 0;
    if (need(r, 4, what)) { memcpy(&v, r->p, 4); r->p += 4; }
    return v;
}

static uint64_t rd_u64(reader *r, const char *what) {
    uint64_t v = 0;
    if (need(r, 8, what)) { memcpy(&v, r->p, 8); r->p += 8; }
    return v;
}

/* a string: returns pointer to bytes and its length */
static const char *rd_str(reader *r, uint64_t *len, const char *what) {
    *len = rd_u64(r, what);
    if (r->st) return NULL;
    if (*len > (1u << 30)) {
        r->st = mq_fail(MQ_ERR_FORMAT, "%s: %s has an absurd length %llu", r->path, what, (unsigned long long)*len);
        return NULL;
    }
    if (!need(r, *len, what)) return NULL;
    const char *s = (const char *)r->p;
    r->p += *len;
    return s;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case MQ_GGUF_U8: case MQ_GGUF_I8: case MQ_GGUF_BOOL: return 1;
    case MQ_GGUF_U16: case MQ_GGUF_I16: return 2;
    case MQ_GGUF_U32: case MQ_GGUF_I32: case MQ_GGUF_F32: return 4;
    case MQ_GGUF_U64: case MQ_GGUF_I64: case MQ_GGUF_F64: return 8;
    default: return 0;
    }
}

static void skip_value(reader *r, kv_t *kv, uint32_t type, const char *key) {
    if (type == MQ_GGUF_STRING) {
        uint64_t n;
        rd_str(r, &n, key);
        return;
    }
    if (type == MQ_GGUF_ARRAY) {
        uint32_t et = rd_u32(r, key);
        uint64_t n = rd_u64(r, key);
        if (r->st) return;
        if (et == MQ_GGUF_ARRAY) {
            r->st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: key '%s': nested arrays are not supported", r->path, key);
            return;
        }
        kv->arr_type = et;
        kv->arr_n = n;
        if (et == MQ_GGUF_STRING) {
            if (n > (uint64_t)(r->end - r->p) / 8) {
                r->st = mq_fail(MQ_ERR_FORMAT, "%s: key '%s': array of %llu strings exceeds the file",
                                r->path, key, (unsigned long long)n);
                return;
            }
            kv->arr_str = mq_malloc((size_t)(n ? n : 1) * sizeof *kv->arr_str);
            for (uint64_t i = 0; i < n && !r->st; i++) {
                kv->arr_str[i] = r->p;
                uint64_t l;
                rd_str(r, &l, key);
            }
            return;
        }
        size_t es = scalar_size(et);
        if (!es) {
            r->st = mq_fail(MQ_ERR_FORMAT, "%s: key '%s': unknown array element type %u", r->path, key, et);
            return;
        }
        if (n > (uint64_t)(r->end - r->p) / es) {
            r->st = mq_fail(MQ_ERR_FORMAT, "%s: key '%s': array of %llu elements exceeds the file",
                            r->path, key, (unsigned long long)n);
            return;
        }
        r->p += n * es;
        return;
    }
    size_t s = scalar_size(type);
    if (!s) {
        r->st = mq_fail(MQ_ERR_FORMAT, "%s: key '%s': unknown value type %u", r->path, key, type);
        return;
    }
    if (need(r, s, key)) r->p += s;
}

void mq_ggml_block(uint32_t type, size_t *bytes, int *elems) {
    *elems = 1;
    switch (type) {
    case MQ_GGML_F32: case MQ_GGML_I32: *bytes = 4; return;
    case MQ_GGML_F16: case MQ_GGML_BF16: case MQ_GGML_I16: *bytes = 2; return;
    case MQ_GGML_I8: *bytes = 1; return;
    case MQ_GGML_F64: case MQ_GGML_I64: *bytes = 8; return;
    case MQ_GGML_Q4_0: *elems = 32; *bytes = 18; return;
    case MQ_GGML_Q4_1: *elems = 32; *bytes = 20; return;
    case MQ_GGML_Q5_0: *elems = 32; *bytes = 22; return;
    case MQ_GGML_Q5_1: *elems = 32; *bytes = 24; return;
    case MQ_GGML_Q8_0: *elems = 32; *bytes = 34; return;
    case MQ_GGML_Q8_1: *elems = 32; *bytes = 36; return;
    case MQ_GGML_Q2_K: *elems = 256; *bytes = 84; return;
    case MQ_GGML_Q3_K: *elems = 256; *bytes = 110; return;
    case MQ_GGML_Q4_K: *elems = 256; *bytes = 144; return;
    case MQ_GGML_Q5_K: *elems = 256; *bytes = 176; return;
    case MQ_GGML_Q6_K: *elems = 256; *bytes = 210; return;
    case MQ_GGML_Q8_K: *elems = 256; *bytes = 292; return;
    default: *bytes = 0; *elems = 0; return;
    }
}

const char *mq_ggml_type_name(uint32_t t) {
    static const char *names[] = {
        [MQ_GGML_F32] = "F32", [MQ_GGML_F16] = "F16", [MQ_GGML_Q4_0] = "Q4_0", [MQ_GGML_Q4_1] = "Q4_1",
        [MQ_GGML_Q5_0] = "Q5_0", [MQ_GGML_Q5_1] = "Q5_1", [MQ_GGML_Q8_0] = "Q8_0", [MQ_GGML_Q8_1] = "Q8_1",
        [MQ_GGML_Q2_K] = "Q2_K", [MQ_GGML_Q3_K] = "Q3_K", [MQ_GGML_Q4_K] = "Q4_K", [MQ_GGML_Q5_K] = "Q5_K",
        [MQ_GGML_Q6_K] = "Q6_K", [MQ_GGML_Q8_K] = "Q8_K", [MQ_GGML_I8] = "I8", [MQ_GGML_I16] = "I16",
        [MQ_GGML_I32] = "I32", [MQ_GGML_I64] = "I64", [MQ_GGML_F64] = "F64", [MQ_GGML_BF16] = "BF16",
    };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "?";
}

void mq_gguf_close(mq_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free(g->kv[i].arr_str);
    }
    for (int i = 0; i < g->n_t; i++) free((char *)g->t[i].name);
    free(g->kv);
    free(g->t);
    mq_unmap(&g->map);
    free(g->path);
    free(g);
}

typedef struct {
    uint64_t off, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name that occurs twice among names[0..n) (sorted copy, O(n log n): a
 * hostile file may hold millions), or NULL. */
static const char *first_duplicate(const char *const *names, size_t n) {
    if (n < 2) return NULL;
    const char **s = mq_malloc(n * sizeof *s);
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(s[i - 1], s[i])) dup = s[i];
    free(s);
    return dup;
}

/* Open, map and validate path (see gguf.h). On error *out is NULL and the
 * message names the file and the key or tensor at fault. */
mq_status mq_gguf_open(const char *path, mq_gguf **out) {
    *out = NULL;
    mq_gguf *g = mq_calloc(1, sizeof *g);
    g->path = mq_strdup(path);
    mq_status st = mq_map_file(path, &g->map);
    if (st) {
        mq_gguf_close(g);
        return st;
    }
    reader r = {g->map.data, g->map.data + g->map.size, path, MQ_OK};
    if (g->map.size < 4 || memcmp(g->map.data, "GGUF", 4)) {
        mq_gguf_close(g);
        return mq_fail(MQ_ERR_FORMAT, "%s: not a GGUF file (bad magic)", path);
    }
    r.p += 4;
    g->version = rd_u32(&r, "version");
    if (!r.st && (g->version < 2 || g->version > 3))
        r.st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)", path, g->version);
    uint64_t n_t = rd_u64(&r, "tensor count"), n_kv = rd_u64(&r, "metadata count");
    if (!r.st && (n_t > (uint64_t)g->map.size / 16 || n_kv > (uint64_t)g->map.size / 12))
        r.st = mq_fail(MQ_ERR_FORMAT, "%s: %llu tensors / %llu metadata entries cannot fit in %zu bytes", path,
                       (unsigned long long)n_t, (unsigned long long)n_kv, g->map.size);
    if (!r.st) {
        g->kv = mq_calloc((size_t)n_kv + 1, sizeof *g->kv);
        g->t = mq_calloc((size_t)n_t + 1, sizeof *g->t);
    }
    uint32_t alignment = 32;
    for (uint64_t i = 0; i < n_kv && !r.st; i++) {
        uint64_t kl;
        const char *k = rd_str(&r, &kl, "metadata key");
        if (r.st) break;
        kv_t *kv = &g->kv[g->n_kv++];
        char *key = mq_malloc(kl + 1);
        memcpy(key, k, kl);
        key[kl] = 0;
        kv->key = key;
        kv->type = rd_u32(&r, key);
        kv->val = r.p;
        skip_value(&r, kv, kv->type, key);
        if (!r.st && !strcmp(key, "general.alignment")) {
            uint32_t a;
            if (kv->type != MQ_GGUF_U32 || !mq_gguf_get_u32(g, key, &a) || a == 0 || (a & (a - 1)) || a > 65536)
                r.st = mq_fail(MQ_ERR_FORMAT, "%s: general.alignment must be a u32 power of two <= 65536", path);
            else
                alignment = a;
        }
    }
    if (!r.st) {
        const char **keys = mq_malloc(((size_t)g->n_kv + 1) * sizeof *keys);
        for (int i = 0; i < g->n_kv; i++) keys[i] = g->kv[i].key;
        const char *dup = first_duplicate(keys, (size_t)g->n_kv);
        if (dup) r.st = mq_fail(MQ_ERR_FORMAT, "%s: metadata key '%s' appears twice", path, dup);
        free(keys);
    }
    for (uint64_t i = 0; i < n_t && !r.st; i++) {
        uint64_t nl;
        const char *nm = rd_str(&r, &nl, "tensor name");
        if (r.st) break;
        mq_gguf_tensor *t = &g->t[g->n_t++];
        char *name = mq_malloc(nl + 1);
        memcpy(name, nm, nl);
        name[nl] = 0;
        t->name = name;
        uint32_t nd = rd_u32(&r, name);
        if (!r.st && (nd < 1 || nd > MQ_MAX_DIMS)) {
            r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1..%d)", path, name, nd, MQ_MAX_DIMS);
            break;
        }
        t->ndim = (int)nd;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nd && !r.st; d++) {
            uint64_t ne = rd_u64(&r, name);
            if (ne > ((uint64_t)1 << 40) || (ne && numel > ((uint64_t)1 << 50) / ne)) {
                r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' dimension %u = %llu is out of range", path,
                               name, d, (unsigned long long)ne);
                break;
            }
            t->ne[d] = (int64_t)ne;
            numel *= ne;
        }
        for (int d = (int)nd; d < MQ_MAX_DIMS; d++) t->ne[d] = 1;
        t->type = rd_u32(&r, name);
        uint64_t off = rd_u64(&r, name);
        if (r.st) break;
        size_t bb;
        int be;
        mq_ggml_block(t->type, &bb, &be);
        if (!bb) {
            r.st = mq_fail(MQ_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown ggml type %u", path, name, t->type);
            break;
        }
        if (t->ne[0] % be) {
            r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': %lld columns are not a multiple of the %s block "
                           "(%d)", path, name, (long long)t->ne[0], mq_ggml_type_name(t->type), be);
            break;
        }
        t->nbytes = (size_t)(numel / (uint64_t)be) * bb;
        t->data = (const void *)(uintptr_t)off; /* fixed up below */
    }
    if (!r.st) {
        const char **names = mq_malloc(((size_t)g->n_t + 1) * sizeof *names);
        for (int i = 0; i < g->n_t; i++) names[i] = g->t[i].name;
        const char *dup = first_duplicate(names, (size_t)g->n_t);
        if (dup) r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' appears twice", path, dup);
        free(names);
    }
    if (!r.st) {
        size_t hdr = (size_t)(r.p - g->map.data);
        size_t data0 = (hdr + alignment - 1) / alignment * alignment;
        size_t avail = g->map.size >= data0 ? g->map.size - data0 : 0;
        span *sp = mq_calloc((size_t)g->n_t + 1, sizeof *sp);
        for (int i = 0; i < g->n_t && !r.st; i++) {
            mq_gguf_tensor *t = &g->t[i];
            uint64_t off = (uint64_t)(uintptr_t)t->data;
            if (off % alignment)
                r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' offset %llu is not aligned to %u", path, t->name,
                               (unsigned long long)off, alignment);
            else if (off > avail || t->nbytes > avail - off)
                r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' data [%llu, %llu) lies outside the file's data "
                               "section (%zu bytes)", path, t->name, (unsigned long long)off,
                               (unsigned long long)(off + t->nbytes), avail);
            else
                t->data = g->map.data + data0 + off;
            sp[i] = (span){off, off + t->nbytes, i};
        }
        if (!r.st) {
            qsort(sp, (size_t)g->n_t, sizeof *sp, cmp_span);
            for (int i = 1; i < g->n_t; i++)
                if (sp[i].off < sp[i - 1].end) {
                    r.st = mq_fail(MQ_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path,
                                   g->t[sp[i - 1].idx].name, g->t[sp[i].idx].name);
                    break;
                }
        }
        free(sp);
    }
    if (r.st) {
        mq_gguf_close(g);
        return r.st;
    }
    *out = g;
    return MQ_OK;
}

const char *mq_gguf_path(const mq_gguf *g) { return g->path; }
uint32_t mq_gguf_version(const mq_gguf *g) { return g->version; }
int mq_gguf_n_kv(const mq_gguf *g) { return g->n_kv; }
const char *mq_gguf_kv_key(const mq_gguf *g, int i) { return g->kv[i].key; }
uint32_t mq_gguf_kv_type(const mq_gguf *g, int i) { return g->kv[i].type; }
int mq_gguf_n_tensors(const mq_gguf *g) { return g->n_t; }
const mq_gguf_tensor *mq_gguf_tensor_at(const mq_gguf *g, int i) { return i >= 0 && i < g->n_t ? &g->t[i] : NULL; }

int64_t mq_gguf_tensor_numel(const mq_gguf_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->ne[i];
    return n;
}

const mq_gguf_tensor *mq_gguf_find_tensor(const mq_gguf *g, const char *name) {
    for (int i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

int mq_gguf_find_key(const mq_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return i;
    return -1;
}

/* numeric scalar at p of type t as double / int64 */
static bool num_at(const uint8_t *p, uint32_t t, double *d, int64_t *iv, bool *is_int) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } v;
    size_t s = scalar_size(t);
    if (!s || t == MQ_GGUF_STRING) return false;
    memcpy(&v, p, s);
    *is_int = true;
    switch (t) {
    case MQ_GGUF_U8: *iv = v.u8; break;
    case MQ_GGUF_I8: *iv = v.i8; break;
    case MQ_GGUF_BOOL: *iv = v.u8 != 0; break;
    case MQ_GGUF_U16: *iv = v.u16; break;
    case MQ_GGUF_I16: *iv = v.i16; break;
    case MQ_GGUF_U32: *iv = v.u32; break;
    case MQ_GGUF_I32: *iv = v.i32; break;
    case MQ_GGUF_U64: if (v.u64 > INT64_MAX) return false; *iv = (int64_t)v.u64; break;
    case MQ_GGUF_I64: *iv = v.i64; break;
    case MQ_GGUF_F32: *d = v.f32; *is_int = false; return true;
    case MQ_GGUF_F64: *d = v.f64; *is_int = false; return true;
    default: return false;
    }
    *d = (double)*iv;
    return true;
}

bool mq_gguf_get_i64(const mq_gguf *g, const char *key, int64_t *v) {
    int i = mq_gguf_find_key(g, key);
    double d;
    bool is_int;
    if (i < 0 || g->kv[i].type == MQ_GGUF_F32 || g->kv[i].type == MQ_GGUF_F64) return false;
    return num_at(g->kv[i].val, g->kv[i].type, &d, v, &is_int) && is_int;
}

bool mq_gguf_get_u32(const mq_gguf *g, const char *key, uint32_t *v) {
    int64_t x;
    if (!mq_gguf_get_i64(g, key, &x) || x < 0 || x > UINT32_MAX) return false;
    *v = (uint32_t)x;
    return true;
}

bool mq_gguf_get_f32(const mq_gguf *g, const char *key, float *v) {
    int i = mq_gguf_find_key(g, key);
    double d;
    int64_t iv;
    bool is_int;
    if (i < 0 || !num_at(g->kv[i].val, g->kv[i].type, &d, &iv, &is_int)) return false;
    *v = (float)d;
    return true;
}

bool mq_gguf_get_bool(const mq_gguf *g, const char *key, bool *v) {
    int i = mq_gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != MQ_GGUF_BOOL) return false;
    *v = g->kv[i].val[0] != 0;
    return true;
}

bool mq_gguf_get_str(const mq_gguf *g, const char *key, const char **s, size_t *len) {
    int i = mq_gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != MQ_GGUF_STRING) return false;
    uint64_t l;
    memcpy(&l, g->kv[i].val, 8);
    *s = (const char *)g->kv[i].val + 8;
    *len = (size_t)l;
    return true;
}

bool mq_gguf_get_arr(const mq_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n) {
    int i = mq_gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != MQ_GGUF_ARRAY) return false;
    *elem_type = g->kv[i].arr_type;
    *n = g->kv[i].arr_n;
    return true;
}

bool mq_gguf_arr_str(const mq_gguf *g, const char *key, uint64_t idx, const char **s, size_t *len) {
    int i = mq_gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != MQ_GGUF_ARRAY || g->kv[i].arr_type != MQ_GGUF_STRING || idx >= g->kv[i].arr_n)
        return false;
    uint64_t l;
    memcpy(&l, g->kv[i].arr_str[idx], 8);
    *s = (const char *)g->kv[i].arr_str[idx] + 8;
    *len = (size_t)l;
    return true;
}

static const uint8_t *arr_elem(const mq_gguf *g, const char *key, uint64_t idx, uint32_t *type) {
    int i = mq_gguf_find_key(g, key);
    if (i < 0 || g->kv[i].type != MQ_GGUF_ARRAY || g->kv[i].arr_type == MQ_GGUF_STRING || idx >= g->kv[i].arr_n)
        return NULL;
    *type = g->kv[i].arr_type;
    return g->kv[i].val + 12 + idx * scalar_size(*type);
}

bool mq_gguf_arr_f32(const mq_gguf *g, const char *key, uint64_t idx, float *v) {
    uint32_t t;
    const uint8_t *p = arr_elem(g, key, idx, &t);
    double d;
    int64_t iv;
    bool is_int;
    if (!p || !num_at(p, t, &d, &iv, &is_int)) return false;
    *v = (float)d;
    return true;
}

bool mq_gguf_arr_i64(const mq_gguf *g, const char *key, uint64_t idx, int64_t *v) {
    uint32_t t;
    const uint8_t *p = arr_elem(g, key, idx, &t);
    double d;
    bool is_int;
    return p && num_at(p, t, &d, v, &is_int) && is_int;
}

static const char *type_name(uint32_t t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return t < 13 ? n[t] : "?";
}

/* Appends s[0..len) quoted to buf at *k, at most max bytes of it (not cutting
 * a UTF-8 sequence), control characters shown as spaces, with "..." when
 * clipped. */
static void put_clipped(char *buf, size_t cap, size_t *k, const char *s, size_t len, size_t max) {
    size_t n = len > max ? max : len;
    while (n < len && n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80) n--; /* s[n] continues a sequence */
    if (*k < cap) buf[(*k)++] = '"';
    for (size_t j = 0; j < n && *k < cap; j++) buf[(*k)++] = (uint8_t)s[j] < 0x20 ? ' ' : s[j];
    for (const char *t = n < len ? "\"..." : "\""; *t && *k < cap; t++) buf[(*k)++] = *t;
    if (*k >= cap) *k = cap - 1;
    buf[*k] = 0;
}

/* One line describing kv i (see gguf.h): strings clipped to 60 bytes, arrays
 * to their first 4 elements (string elements to 20 bytes each). Always
 * NUL-terminated when cap > 0. */
void mq_gguf_kv_describe(const mq_gguf *g, int i, char *buf, size_t cap) {
    if (!cap) return;
    const kv_t *kv = &g->kv[i];
    double d;
    int64_t iv;
    bool is_int;
    size_t k;
    const char *s;
    size_t l;
    buf[0] = 0;
    if (kv->type == MQ_GGUF_STRING) {
        mq_gguf_get_str(g, kv->key, &s, &l);
        k = (size_t)snprintf(buf, cap, "str = ");
        if (k < cap) put_clipped(buf, cap, &k, s, l, 60);
    } else if (kv->type == MQ_GGUF_ARRAY) {
        k = (size_t)snprintf(buf, cap, "arr[%s,%llu] = [", type_name(kv->arr_type), (unsigned long long)kv->arr_n);
        for (uint64_t j = 0; j < kv->arr_n && j < 4 && k < cap; j++) {
            if (j) k += (size_t)snprintf(buf + k, cap - k, ", ");
            if (k >= cap) break;
            if (kv->arr_type == MQ_GGUF_STRING) {
                mq_gguf_arr_str(g, kv->key, j, &s, &l);
                put_clipped(buf, cap, &k, s, l, 20);
            } else if (num_at(kv->val + 12 + j * scalar_size(kv->arr_type), kv->arr_type, &d, &iv, &is_int)) {
                k += is_int ? (size_t)snprintf(buf + k, cap - k, "%lld", (long long)iv)
                            : (size_t)snprintf(buf + k, cap - k, "%g", d);
            }
        }
        if (k < cap) snprintf(buf + k, cap - k, "%s]", kv->arr_n > 4 ? ", ..." : "");
    } else if (num_at(kv->val, kv->type, &d, &iv, &is_int)) {
        if (kv->type == MQ_GGUF_BOOL) snprintf(buf, cap, "bool = %s", iv ? "true" : "false");
        else if (is_int) snprintf(buf, cap, "%s = %lld", type_name(kv->type), (long long)iv);
        else snprintf(buf, cap, "%s = %g", type_name(kv->type), d);
    } else {
        snprintf(buf, cap, "?");
    }
}
