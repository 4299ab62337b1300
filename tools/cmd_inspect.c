/*
 * cmd_inspect.c — `matquant inspect FILE [--all] [--json]`: metadata and the
 * tensor table (name, dtype, shape, bytes) of a .safetensors file, a .gguf
 * file or an HF directory (its safetensors set, sharded or not), then the
 * totals (tensors, parameters, bytes). For a matquant checkpoint also the
 * histogram of the int8 parent codes and, per width r, the share of weights
 * whose rounded slice overflows the r-bit range (the weights extra precision
 * keeps). --json prints one JSON object instead (every tensor, typed
 * metadata values, long GGUF arrays abbreviated to their first elements).
 *
 * Not here: validation (the readers do it: a bad file is a one-line error,
 * exit 1); dequantizing or checking tensor values.
 */
#include "cli.h"
#include "io/gguf.h"
#include "io/safetensors.h"

#include <cJSON.h>
#include <string.h>

#define TEXT_ROWS 40  /* tensors listed without --all */
#define JSON_ARR_HEAD 8 /* elements of a long GGUF array shown in --json */

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim, bool reverse) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "",
                              (long long)shape[reverse ? ndim - 1 - i : i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static void print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    if (s) puts(s);
    free(s);
    cJSON_Delete(j);
}

static cJSON *shape_json(const int64_t *shape, int ndim, bool reverse) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[reverse ? ndim - 1 - i : i]));
    return a;
}

static void add_totals(cJSON *j, int n, int64_t params, size_t bytes) {
    cJSON_AddNumberToObject(j, "n_tensors", n);
    cJSON_AddNumberToObject(j, "n_params", (double)params);
    cJSON_AddNumberToObject(j, "n_bytes", (double)bytes);
}

/* ================================================================ GGUF */

static cJSON *gguf_string(const char *s, size_t len) {
    char *z = malloc(len + 1);
    if (!z) return cJSON_CreateNull();
    memcpy(z, s, len);
    z[len] = 0;
    cJSON *r = cJSON_CreateString(z); /* NULL for bytes cJSON refuses */
    free(z);
    return r ? r : cJSON_CreateNull();
}

/* The value of kv i as JSON: a number, bool or string; an array as
 * {"type", "count", "head": first JSON_ARR_HEAD elements}. */
static cJSON *gguf_kv_json(const mq_gguf *g, int i) {
    const char *key = mq_gguf_kv_key(g, i);
    uint32_t type = mq_gguf_kv_type(g, i);
    const char *s;
    size_t len;
    bool b;
    int64_t iv;
    float f;
    if (type == MQ_GGUF_STRING && mq_gguf_get_str(g, key, &s, &len)) return gguf_string(s, len);
    if (type == MQ_GGUF_BOOL && mq_gguf_get_bool(g, key, &b)) return cJSON_CreateBool(b);
    if (type == MQ_GGUF_F32 || type == MQ_GGUF_F64)
        return mq_gguf_get_f32(g, key, &f) ? cJSON_CreateNumber(f) : cJSON_CreateNull();
    if (type != MQ_GGUF_ARRAY)
        return mq_gguf_get_i64(g, key, &iv) ? cJSON_CreateNumber((double)iv) : cJSON_CreateNull();
    uint32_t et;
    uint64_t n;
    cJSON *o = cJSON_CreateObject();
    if (!mq_gguf_get_arr(g, key, &et, &n)) return o;
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64",
                                  "f64"};
    cJSON_AddStringToObject(o, "type", et < 13 ? names[et] : "?");
    cJSON_AddNumberToObject(o, "count", (double)n);
    cJSON *head = cJSON_AddArrayToObject(o, "head");
    for (uint64_t k = 0; k < n && k < JSON_ARR_HEAD; k++) {
        if (et == MQ_GGUF_STRING)
            cJSON_AddItemToArray(head, mq_gguf_arr_str(g, key, k, &s, &len) ? gguf_string(s, len) : cJSON_CreateNull());
        else if (et == MQ_GGUF_F32 || et == MQ_GGUF_F64)
            cJSON_AddItemToArray(head, mq_gguf_arr_f32(g, key, k, &f) ? cJSON_CreateNumber(f) : cJSON_CreateNull());
        else
            cJSON_AddItemToArray(head, mq_gguf_arr_i64(g, key, k, &iv) ? cJSON_CreateNumber((double)iv)
                                                                      : cJSON_CreateNull());
    }
    return o;
}

static int inspect_gguf(const char *path, bool all, bool json) {
    mq_gguf *g;
    if (mq_gguf_open(path, &g)) {
        cli_error("inspect", "%s", mq_last_error());
        return 1;
    }
    int n = mq_gguf_n_tensors(g);
    int64_t params = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        params += mq_gguf_tensor_numel(mq_gguf_tensor_at(g, i));
        bytes += mq_gguf_tensor_at(g, i)->nbytes;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *ts = cJSON_CreateArray();
        cJSON_AddStringToObject(j, "path", path);
        cJSON_AddStringToObject(j, "format", "gguf");
        cJSON_AddNumberToObject(j, "version", mq_gguf_version(g));
        cJSON_AddItemToObject(j, "metadata", meta);
        for (int i = 0; i < mq_gguf_n_kv(g); i++) cJSON_AddItemToObject(meta, mq_gguf_kv_key(g, i), gguf_kv_json(g, i));
        cJSON_AddItemToObject(j, "tensors", ts);
        for (int i = 0; i < n; i++) {
            const mq_gguf_tensor *t = mq_gguf_tensor_at(g, i);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "dtype", mq_ggml_type_name(t->type));
            cJSON_AddItemToObject(o, "shape", shape_json(t->ne, t->ndim, true));
            cJSON_AddItemToObject(o, "ne", shape_json(t->ne, t->ndim, false));
            cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(ts, o);
        }
        add_totals(j, n, params, bytes);
        print_json(j);
        mq_gguf_close(g);
        return 0;
    }
    printf("%s: GGUF v%u, %d metadata keys, %d tensors\n\nmetadata:\n", path, mq_gguf_version(g), mq_gguf_n_kv(g), n);
    char buf[512];
    for (int i = 0; i < mq_gguf_n_kv(g); i++) {
        mq_gguf_kv_describe(g, i, buf, sizeof buf);
        printf("  %-44s %s\n", mq_gguf_kv_key(g, i), buf);
    }
    printf("\ntensors (shape as [rows, cols], ggml ne reversed):\n");
    printf("  %-40s %-5s %-16s %12s\n", "name", "dtype", "shape", "bytes");
    for (int i = 0; i < n && (all || i < TEXT_ROWS); i++) {
        const mq_gguf_tensor *t = mq_gguf_tensor_at(g, i);
        shape_str(buf, sizeof buf, t->ne, t->ndim, true);
        printf("  %-40s %-5s %-16s %12zu\n", t->name, mq_ggml_type_name(t->type), buf, t->nbytes);
    }
    if (!all && n > TEXT_ROWS) printf("  ... %d more (--all lists every tensor)\n", n - TEXT_ROWS);
    printf("\n%d tensors, %lld parameters, %zu bytes (%.2f MiB) of tensor data\n", n, (long long)params, bytes,
           bytes / 1048576.0);
    mq_gguf_close(g);
    return 0;
}

/* ========================================================= safetensors */

/* parent-code histogram and overflow shares of a checkpoint's qweights */
static void code_stats(const mq_st_set *s) {
    uint64_t hist[256] = {0}, total = 0;
    for (int i = 0; i < mq_st_set_count(s); i++) {
        const mq_tensor *t = mq_st_set_at(s, i);
        if (t->dtype != MQ_DTYPE_U8 || !mq_has_suffix(t->name, ".qweight")) continue;
        const uint8_t *q = t->data;
        for (size_t k = 0; k < t->nbytes; k++) hist[q[k]]++;
        total += t->nbytes;
    }
    if (!total) return;
    printf("\nparent codes (%llu weights), histogram in 16 bins of 16 codes:\n", (unsigned long long)total);
    uint64_t bins[16] = {0}, mx = 0;
    for (int c = 0; c < 256; c++) bins[c / 16] += hist[c];
    for (int b = 0; b < 16; b++) mx = bins[b] > mx ? bins[b] : mx;
    for (int b = 0; b < 16; b++) {
        int bar = mx ? (int)(50.0 * bins[b] / mx + 0.5) : 0;
        printf("  %3d-%3d %6.2f%% ", 16 * b, 16 * b + 15, 100.0 * bins[b] / total);
        for (int k = 0; k < bar; k++) putchar('#');
        putchar('\n');
    }
    printf("\nweights whose slice to r bits overflows 2^r - 1 (kept by extra precision 'rx'):\n");
    for (int r = 1; r < 8; r++) {
        int d = 8 - r;
        uint64_t over = 0;
        for (int c = 0; c < 256; c++)
            if (((c + (1 << (d - 1))) >> d) > (1 << r) - 1) over += hist[c];
        printf("  r=%d  %.3f%%\n", r, 100.0 * over / total);
    }
}

/* Metadata pair number >= i of a file, or the next known key present in a
 * set's first shard: fills *k, *v and returns the index to ask for next; 0
 * when there is no more. */
static int st_meta(const mq_st_file *f, const mq_st_set *s, int i, const char **k, const char **v) {
    static const char *keys[] = {"format", "matquant.format_version", "matquant.method", "matquant.parent_bits",
                                 "matquant.group_size", "matquant.scope", "matquant.train_bits",
                                 "matquant.lambdas", "matquant.slicing", "matquant.calibration", "matquant.source"};
    if (f) {
        if (i >= mq_st_meta_count(f)) return 0;
        mq_st_meta_at(f, i, k, v);
        return i + 1;
    }
    for (; i < (int)(sizeof keys / sizeof keys[0]); i++) {
        *k = keys[i];
        *v = mq_st_set_meta(s, keys[i]);
        if (*v) return i + 1; /* the next index to ask for */
    }
    return 0;
}

static int inspect_st(const char *path, bool all, bool json) {
    mq_st_set *s = NULL;
    mq_st_file *f = NULL;
    mq_status st = mq_is_dir(path) ? mq_st_open_dir(path, &s) : mq_st_open(path, &f);
    if (st) {
        cli_error("inspect", "%s", mq_last_error());
        return 1;
    }
    int n = s ? mq_st_set_count(s) : mq_st_count(f);
    int64_t params = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        const mq_tensor *t = s ? mq_st_set_at(s, i) : mq_st_at(f, i);
        params += mq_tensor_numel(t);
        bytes += t->nbytes;
    }
    const char *k, *v;
    if (json) {
        cJSON *j = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *ts = cJSON_CreateArray();
        cJSON_AddStringToObject(j, "path", path);
        cJSON_AddStringToObject(j, "format", s ? "safetensors-dir" : "safetensors");
        cJSON_AddItemToObject(j, "metadata", meta);
        for (int i = 0, next; (next = st_meta(f, s, i, &k, &v)); i = next)
            cJSON_AddStringToObject(meta, k, v);
        cJSON_AddItemToObject(j, "tensors", ts);
        for (int i = 0; i < n; i++) {
            const mq_tensor *t = s ? mq_st_set_at(s, i) : mq_st_at(f, i);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "dtype", mq_dtype_name(t->dtype));
            cJSON_AddItemToObject(o, "shape", shape_json(t->shape, t->ndim, false));
            cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
            cJSON_AddItemToArray(ts, o);
        }
        add_totals(j, n, params, bytes);
        print_json(j);
    } else {
        printf("%s: safetensors%s, %d tensors\n", path, s ? " directory" : "", n);
        bool any = false;
        for (int i = 0, next; (next = st_meta(f, s, i, &k, &v)); i = next) {
            if (!any) printf("\nmetadata:\n");
            any = true;
            printf("  %-32s %s\n", k, v);
        }
        printf("\ntensors:\n");
        printf("  %-48s %-5s %-16s %12s\n", "name", "dtype", "shape", "bytes");
        char buf[128];
        for (int i = 0; i < n && (all || i < TEXT_ROWS); i++) {
            const mq_tensor *t = s ? mq_st_set_at(s, i) : mq_st_at(f, i);
            shape_str(buf, sizeof buf, t->shape, t->ndim, false);
            printf("  %-48s %-5s %-16s %12zu\n", t->name, mq_dtype_name(t->dtype), buf, t->nbytes);
        }
        if (!all && n > TEXT_ROWS) printf("  ... %d more (--all lists every tensor)\n", n - TEXT_ROWS);
        printf("\n%d tensors, %lld parameters, %zu bytes (%.2f MiB) of tensor data\n", n, (long long)params, bytes,
               bytes / 1048576.0);
        if (s) code_stats(s);
    }
    mq_st_set_close(s);
    mq_st_close(f);
    return 0;
}

/* ============================================================ command */

int cmd_inspect(int argc, char **argv) {
    bool all = false, json = false;
    cli_opt opts[] = {
        {"all", 0, OPT_FLAG, &all, "list every tensor (default: off, the first 40)"},
        {"json", 0, OPT_FLAG, &json, "print one JSON object with every tensor instead (default: off)"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("inspect", "FILE [--all] [--json]",
                       "Show the metadata, the tensors (name, dtype, shape, bytes) and the totals\n"
                       "(tensors, parameters, bytes) of FILE: a .safetensors file, a .gguf file or\n"
                       "an HF directory (model.safetensors or model.safetensors.index.json shards).\n"
                       "GGUF shapes are printed as [rows, cols] (ggml ne reversed); long GGUF arrays\n"
                       "are abbreviated. For a matquant checkpoint also its parent-code histogram.\n"
                       "Files are validated; a bad one is reported on stderr with exit code 1.",
                       opts, argc, argv, pos, 1, &npos);
    if (rc >= 0) return rc;
    if (npos != 1) {
        cli_error("inspect", "expected one FILE argument (see matquant inspect --help)");
        return 2;
    }
    const char *p = pos[0];
    if (!mq_is_dir(p) && !mq_file_exists(p)) {
        cli_error("inspect", "%s: no such file or directory", p);
        return 1;
    }
    if (!mq_is_dir(p)) {
        FILE *fh = fopen(p, "rb");
        char magic[4] = {0};
        size_t got = fh ? fread(magic, 1, 4, fh) : 0;
        if (fh) fclose(fh);
        if ((got == 4 && !memcmp(magic, "GGUF", 4)) || mq_has_suffix(p, ".gguf")) return inspect_gguf(p, all, json);
    }
    return inspect_st(p, all, json);
}
