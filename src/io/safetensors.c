/*
 * safetensors.c — read (validated, mmap'ed) and write (atomic) safetensors
 * files, and open the weight set of an HF directory (single file or sharded
 * index). See safetensors.h for the format and the checks.
 * Reference: https://github.com/huggingface/safetensors (README "Format");
 * the header is parsed with cJSON after a UTF-8 check (cJSON does not do one).
 *
 * Not here: tensor semantics; NaN checks (the model loader's). The reader is
 * lenient where the reference is strict without a safety reason: gaps between
 * tensors and trailing bytes after the last one are accepted.
 */
#include "io/safetensors.h"

#include <cJSON.h>
#include <string.h>

#define MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, as the reference library */

struct mq_st_file {
    char *path;
    mq_map map;
    mq_tensor *t;
    char **names;
    int n;
    char **meta_k, **meta_v;
    int n_meta;
};

/* Index of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF included) in s[0..n), or -1 if it is valid. */
static int64_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || n - i < (size_t)len) return (int64_t)i;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (s[i + 1] < lo || s[i + 1] > hi) return (int64_t)i;
        for (int k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return (int64_t)i;
        i += (size_t)len;
    }
    return -1;
}

typedef struct {
    size_t begin, end; /* data_offsets */
    int idx;           /* tensor */
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Unmaps f and frees it; its tensors' names and data become invalid. NULL ok. */
void mq_st_close(mq_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->names[i]);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_k[i]);
        free(f->meta_v[i]);
    }
    free(f->names);
    free(f->t);
    free(f->meta_k);
    free(f->meta_v);
    mq_unmap(&f->map);
    free(f->path);
    free(f);
}

static mq_status parse_tensor(mq_st_file *f, const cJSON *e, size_t data_size, mq_tensor *t) {
    const char *p = f->path, *name = e->string;
    if (!cJSON_IsObject(e))
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': entry is not an object", p, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': needs \"dtype\", \"shape\" and two \"data_offsets\"",
                       p, name);
    if (!mq_dtype_from_name(dt->valuestring, &t->dtype))
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", p, name, dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > MQ_MAX_DIMS)
        return mq_fail(MQ_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)", p, name, nd, MQ_MAX_DIMS);
    t->ndim = nd;
    size_t bytes = mq_dtype_size(t->dtype);
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                           p, name, i);
        t->shape[i] = (int64_t)d->valuedouble;
        if (!mq_mul_ok(bytes, (size_t)t->shape[i], &bytes))
            return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': shape overflows", p, name);
    }
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ||
        b < 0 || en < b || en > 9.0e15 || b != (double)(int64_t)b || en != (double)(int64_t)en)
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': bad data_offsets", p, name);
    size_t begin = (size_t)b, end = (size_t)en;
    if (end > data_size)
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%zu, %zu] exceed the data section "
                       "(%zu bytes)", p, name, begin, end, data_size);
    if (end - begin != bytes)
        return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s': %s %s needs %zu bytes but data_offsets span %zu",
                       p, name, dt->valuestring, nd ? "shape" : "scalar", bytes, end - begin);
    t->nbytes = bytes;
    t->data = (const uint8_t *)f->map.data + 8 + (f->map.size - 8 - data_size) + begin;
    return MQ_OK;
}

/* Map and validate path (see safetensors.h). On error *out is NULL, nothing
 * stays mapped, and the message names the file and the tensor or key. */
mq_status mq_st_open(const char *path, mq_st_file **out) {
    *out = NULL;
    mq_st_file *f = mq_calloc(1, sizeof *f);
    f->path = mq_strdup(path);
    mq_status st = mq_map_file(path, &f->map);
    if (st) {
        mq_st_close(f);
        return st;
    }
    if (f->map.size < 8) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: truncated: %zu bytes, too short for a safetensors header", path,
                     f->map.size);
        mq_st_close(f);
        return st;
    }
    uint64_t hlen;
    memcpy(&hlen, f->map.data, 8);
    if (hlen > MAX_HEADER || hlen > f->map.size - 8) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes)%s", path,
                     (unsigned long long)hlen, f->map.size, hlen > MAX_HEADER ? " or the 100 MB limit" : "");
        mq_st_close(f);
        return st;
    }
    const char *h = (const char *)f->map.data + 8;
    size_t data_size = f->map.size - 8 - (size_t)hlen;
    int64_t bad = utf8_invalid_at((const uint8_t *)h, (size_t)hlen);
    if (bad >= 0) {
        mq_st_close(f);
        return mq_fail(MQ_ERR_FORMAT, "%s: the header is not valid UTF-8 (byte %lld of the header)", path,
                       (long long)bad);
    }
    cJSON *j = cJSON_ParseWithLength(h, (size_t)hlen);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        mq_st_close(f);
        return mq_fail(MQ_ERR_FORMAT, "%s: the header is not a JSON object", path);
    }
    int n = cJSON_GetArraySize(j);
    f->t = mq_calloc((size_t)n + 1, sizeof *f->t);
    f->names = mq_calloc((size_t)n + 1, sizeof *f->names);
    span *spans = mq_calloc((size_t)n + 1, sizeof *spans);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        if (!strcmp(e->string, "__metadata__")) {
            if (f->meta_k) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: __metadata__ appears twice", path);
                break;
            }
            if (!cJSON_IsObject(e)) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            int nm = cJSON_GetArraySize(e);
            f->meta_k = mq_calloc((size_t)nm + 1, sizeof(char *));
            f->meta_v = mq_calloc((size_t)nm + 1, sizeof(char *));
            const cJSON *kv;
            cJSON_ArrayForEach(kv, e) {
                if (!cJSON_IsString(kv)) {
                    st = mq_fail(MQ_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", path, kv->string);
                    break;
                }
                f->meta_k[f->n_meta] = mq_strdup(kv->string);
                f->meta_v[f->n_meta++] = mq_strdup(kv->valuestring);
            }
            if (st) break;
            continue;
        }
        for (int i = 0; i < f->n; i++)
            if (!strcmp(f->names[i], e->string)) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' appears twice", path, e->string);
                break;
            }
        if (st) break;
        mq_tensor *t = &f->t[f->n];
        if ((st = parse_tensor(f, e, data_size, t))) break;
        f->names[f->n] = mq_strdup(e->string);
        t->name = f->names[f->n];
        size_t begin = (size_t)((const uint8_t *)t->data - (f->map.data + 8 + hlen));
        spans[f->n] = (span){begin, begin + t->nbytes, f->n};
        f->n++;
    }
    cJSON_Delete(j);
    if (st == MQ_OK) {
        qsort(spans, (size_t)f->n, sizeof *spans, cmp_span);
        for (int i = 1; i < f->n; i++)
            if (spans[i].begin < spans[i - 1].end) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", path,
                             f->names[spans[i - 1].idx], spans[i - 1].begin, spans[i - 1].end,
                             f->names[spans[i].idx], spans[i].begin, spans[i].end);
                break;
            }
    }
    free(spans);
    if (st) {
        mq_st_close(f);
        return st;
    }
    *out = f;
    return MQ_OK;
}

int mq_st_count(const mq_st_file *f) { return f->n; }
const mq_tensor *mq_st_at(const mq_st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
const char *mq_st_path(const mq_st_file *f) { return f->path; }
int mq_st_meta_count(const mq_st_file *f) { return f->n_meta; }

const mq_tensor *mq_st_find(const mq_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *mq_st_meta(const mq_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_k[i], key)) return f->meta_v[i];
    return NULL;
}

void mq_st_meta_at(const mq_st_file *f, int i, const char **key, const char **value) {
    *key = f->meta_k[i];
    *value = f->meta_v[i];
}

/* ============================================================ sets */

struct mq_st_set {
    mq_st_file **files;
    int n_files;
    const mq_tensor **all; /* every tensor of every shard, shard by shard */
    int n_all;
};

/* Closes every shard and frees the set. NULL ok. */
void mq_st_set_close(mq_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) mq_st_close(s->files[i]);
    free(s->files);
    free(s->all);
    free(s);
}

static mq_status set_add(mq_st_set *s, const char *path) {
    mq_st_file *f;
    mq_status st = mq_st_open(path, &f);
    if (st) return st;
    s->files = mq_realloc(s->files, (size_t)(s->n_files + 1) * sizeof *s->files);
    s->files[s->n_files++] = f;
    s->all = mq_realloc(s->all, ((size_t)s->n_all + (size_t)f->n + 1) * sizeof *s->all);
    for (int i = 0; i < f->n; i++) {
        const mq_tensor *other = mq_st_set_find(s, f->t[i].name);
        if (other)
            return mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' is also in another shard", path, f->t[i].name);
        s->all[s->n_all++] = &f->t[i];
    }
    return MQ_OK;
}

/* The shards named by an index file's weight_map, each opened once in order
 * of first mention; every mapped tensor must be in the shard it names. */
static mq_status open_index(mq_st_set *s, const char *dir, const char *index) {
    char *text;
    size_t len;
    mq_status st = mq_read_file(index, &text, &len);
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map"), *e;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_FORMAT, "%s: not JSON with a \"weight_map\" object", index);
    }
    if (!wm->child) st = mq_fail(MQ_ERR_FORMAT, "%s: weight_map is empty", index);
    const char **shard = NULL; /* shard[i] is the file of s->files[i] */
    cJSON_ArrayForEach(e, wm) {
        if (st) break;
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/') ||
            !strcmp(e->valuestring, ".") || !strcmp(e->valuestring, "..")) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the directory", index,
                         e->string);
            break;
        }
        int k = 0;
        while (k < s->n_files && strcmp(shard[k], e->valuestring)) k++;
        if (k == s->n_files) {
            char *p = mq_path_join(dir, e->valuestring);
            st = set_add(s, p);
            free(p);
            shard = mq_realloc(shard, (size_t)s->n_files * sizeof *shard);
            shard[s->n_files - 1] = e->valuestring;
            if (st) break;
        }
        if (!mq_st_find(s->files[k], e->string))
            st = mq_fail(MQ_ERR_FORMAT, "%s: tensor '%s' is not in shard %s", index, e->string, e->valuestring);
    }
    free(shard);
    cJSON_Delete(j);
    return st;
}

/* Open dir's weights (see safetensors.h). On error *out is NULL and the
 * message names the index or shard at fault. */
mq_status mq_st_open_dir(const char *dir, mq_st_set **out) {
    *out = NULL;
    mq_st_set *s = mq_calloc(1, sizeof *s);
    char *single = mq_path_join(dir, "model.safetensors");
    char *index = mq_path_join(dir, "model.safetensors.index.json");
    mq_status st;
    if (mq_file_exists(single))
        st = set_add(s, single);
    else if (mq_file_exists(index))
        st = open_index(s, dir, index);
    else
        st = mq_fail(MQ_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(single);
    free(index);
    if (st) {
        mq_st_set_close(s);
        return st;
    }
    *out = s;
    return MQ_OK;
}

const mq_tensor *mq_st_set_find(const mq_st_set *s, const char *name) {
    for (int i = 0; i < s->n_all; i++)
        if (!strcmp(s->all[i]->name, name)) return s->all[i];
    return NULL;
}

int mq_st_set_count(const mq_st_set *s) { return s->n_all; }
const mq_tensor *mq_st_set_at(const mq_st_set *s, int i) { return i >= 0 && i < s->n_all ? s->all[i] : NULL; }
const char *mq_st_set_meta(const mq_st_set *s, const char *key) {
    return s->n_files ? mq_st_meta(s->files[0], key) : NULL;
}

/* ============================================================ writing */

/* Checks one tensor handed to the writer: name, dtype, dims, and nbytes
 * equal to the (overflow-checked) size its shape needs. */
static mq_status check_out_tensor(const char *path, const mq_tensor *t) {
    if (!t->name || !*t->name || !strcmp(t->name, "__metadata__"))
        return mq_fail(MQ_ERR_ARG, "%s: a tensor has an empty or reserved name", path);
    if ((unsigned)t->dtype >= MQ_DTYPE_COUNT)
        return mq_fail(MQ_ERR_ARG, "%s: tensor '%s': invalid dtype %d", path, t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > MQ_MAX_DIMS)
        return mq_fail(MQ_ERR_ARG, "%s: tensor '%s': %d dimensions (0..%d)", path, t->name, t->ndim, MQ_MAX_DIMS);
    size_t want = mq_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || !mq_mul_ok(want, (size_t)t->shape[d], &want))
            return mq_fail(MQ_ERR_ARG, "%s: tensor '%s': bad shape entry %d (%lld)", path, t->name, d,
                           (long long)t->shape[d]);
    if (want != t->nbytes)
        return mq_fail(MQ_ERR_ARG, "%s: tensor '%s': %zu bytes given for a shape of %zu", path, t->name,
                       t->nbytes, want);
    if (want && !t->data) return mq_fail(MQ_ERR_ARG, "%s: tensor '%s': no data", path, t->name);
    return MQ_OK;
}

/* Write path atomically (see safetensors.h). The data section is contiguous
 * (the reference reader rejects gaps), so to keep every tensor aligned to its
 * element size the tensors are laid out widest dtype first, in the given
 * order within a width; the header lists them in that order. MQ_ERR_ARG for
 * an inconsistent tensor, a repeated name or metadata key; MQ_ERR_IO if the
 * write fails (nothing is left under path then). */
mq_status mq_st_write(const char *path, const mq_tensor *tensors, int n, const mq_kv *meta, int n_meta) {
    if (n < 0 || n_meta < 0) return mq_fail(MQ_ERR_ARG, "%s: negative tensor or metadata count", path);
    for (int i = 0; i < n; i++) {
        mq_status st = check_out_tensor(path, &tensors[i]);
        if (st) return st;
        for (int k = 0; k < i; k++)
            if (!strcmp(tensors[k].name, tensors[i].name))
                return mq_fail(MQ_ERR_ARG, "%s: tensor '%s' given twice", path, tensors[i].name);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return mq_fail(MQ_ERR_ARG, "%s: metadata entry %d has no key or value", path, i);
        for (int k = 0; k < i; k++)
            if (!strcmp(meta[k].key, meta[i].key))
                return mq_fail(MQ_ERR_ARG, "%s: metadata key '%s' given twice", path, meta[i].key);
    }
    const mq_tensor **order = mq_malloc((size_t)(n ? n : 1) * sizeof *order);
    int k = 0;
    for (size_t w = 8; w >= 1; w /= 2)
        for (int i = 0; i < n; i++)
            if (mq_dtype_size(tensors[i].dtype) == w) order[k++] = &tensors[i];
    MQ_ASSERT(k == n);
    cJSON *h = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(h, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[i].key, meta[i].value);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const mq_tensor *t = order[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", mq_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        if (!mq_add_ok(off, t->nbytes, &off) || off > ((size_t)1 << 53)) {
            cJSON_Delete(h);
            free(order);
            return mq_fail(MQ_ERR_ARG, "%s: tensors too large for one file", path);
        }
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
    uint64_t hl = padded;
    mq_atomic_file af;
    mq_status st = mq_atomic_open(&af, path);
    if (st) {
        free(json);
        free(order);
        return st;
    }
    static const char spaces[8] = "        ";
    mq_atomic_write(&af, &hl, 8);
    mq_atomic_write(&af, json, jl);
    mq_atomic_write(&af, spaces, padded - jl);
    for (int i = 0; i < n; i++) mq_atomic_write(&af, order[i]->data, order[i]->nbytes);
    free(json);
    free(order);
    return mq_atomic_commit(&af);
}
