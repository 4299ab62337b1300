/*
 * cmd_inspect.c — `matquant inspect FILE`: metadata and tensor table of a
 * .safetensors file, a .gguf file or an HF directory (its safetensors set).
 * For a matquant checkpoint also the histogram of the int8 parent codes and,
 * per width r, the share of weights whose rounded slice overflows the r-bit
 * range (the weights extra precision keeps).
 */
#include "cli.h"
#include "io/gguf.h"
#include "io/safetensors.h"

#include <string.h>

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim, bool reverse) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "",
                              (long long)shape[reverse ? ndim - 1 - i : i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static int inspect_gguf(const char *path, bool all) {
    mq_gguf *g;
    if (mq_gguf_open(path, &g)) {
        cli_error("inspect", "%s", mq_last_error());
        return 1;
    }
    printf("%s: GGUF v%u, %d metadata keys, %d tensors\n\nmetadata:\n", path, mq_gguf_version(g), mq_gguf_n_kv(g),
           mq_gguf_n_tensors(g));
    char buf[512];
    for (int i = 0; i < mq_gguf_n_kv(g); i++) {
        mq_gguf_kv_describe(g, i, buf, sizeof buf);
        printf("  %-44s %s\n", mq_gguf_kv_key(g, i), buf);
    }
    printf("\ntensors (shape as [rows, cols], ggml ne reversed):\n");
    int64_t params = 0;
    size_t bytes = 0;
    for (int i = 0; i < mq_gguf_n_tensors(g); i++) {
        const mq_gguf_tensor *t = mq_gguf_tensor_at(g, i);
        params += mq_gguf_tensor_numel(t);
        bytes += t->nbytes;
        if (!all && i >= 40) continue;
        shape_str(buf, sizeof buf, t->ne, t->ndim, true);
        printf("  %-40s %-5s %-16s %12zu bytes\n", t->name, mq_ggml_type_name(t->type), buf, t->nbytes);
    }
    if (!all && mq_gguf_n_tensors(g) > 40) printf("  ... %d more (--all lists every tensor)\n", mq_gguf_n_tensors(g) - 40);
    printf("\n%d tensors, %lld parameters, %.2f MiB of tensor data\n", mq_gguf_n_tensors(g), (long long)params,
           bytes / 1048576.0);
    mq_gguf_close(g);
    return 0;
}

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

static int inspect_st(const char *path, bool all) {
    mq_st_set *s = NULL;
    mq_st_file *f = NULL;
    mq_status st = mq_is_dir(path) ? mq_st_open_dir(path, &s) : mq_st_open(path, &f);
    if (st) {
        cli_error("inspect", "%s", mq_last_error());
        return 1;
    }
    int n = s ? mq_st_set_count(s) : mq_st_count(f);
    printf("%s: safetensors, %d tensors\n", path, n);
    if (f && mq_st_meta_count(f)) {
        printf("\nmetadata:\n");
        for (int i = 0; i < mq_st_meta_count(f); i++) {
            const char *k, *v;
            mq_st_meta_at(f, i, &k, &v);
            printf("  %-32s %s\n", k, v);
        }
    } else if (s) {
        static const char *keys[] = {"matquant.format_version", "matquant.method", "matquant.parent_bits",
                                     "matquant.group_size", "matquant.scope", "matquant.train_bits",
                                     "matquant.lambdas", "matquant.slicing", "matquant.calibration",
                                     "matquant.source"};
        bool any = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            const char *v = mq_st_set_meta(s, keys[i]);
            if (!v) continue;
            if (!any) printf("\nmetadata:\n");
            any = true;
            printf("  %-32s %s\n", keys[i], v);
        }
    }
    printf("\ntensors:\n");
    int64_t params = 0;
    size_t bytes = 0;
    char buf[128];
    for (int i = 0; i < n; i++) {
        const mq_tensor *t = s ? mq_st_set_at(s, i) : mq_st_at(f, i);
        params += mq_tensor_numel(t);
        bytes += t->nbytes;
        if (!all && i >= 40) continue;
        shape_str(buf, sizeof buf, t->shape, t->ndim, false);
        printf("  %-48s %-5s %-16s %12zu bytes\n", t->name, mq_dtype_name(t->dtype), buf, t->nbytes);
    }
    if (!all && n > 40) printf("  ... %d more (--all lists every tensor)\n", n - 40);
    printf("\n%d tensors, %lld elements, %.2f MiB of tensor data\n", n, (long long)params, bytes / 1048576.0);
    if (s) {
        code_stats(s);
        mq_st_set_close(s);
    }
    if (f) mq_st_close(f);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    bool all = false;
    cli_opt opts[] = {
        {"all", 0, OPT_FLAG, &all, "list every tensor (default: the first 40)"},
        {0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("inspect", "FILE [--all]",
                       "Show the metadata and tensors of a .safetensors file, a .gguf file or an HF\n"
                       "directory; for a matquant checkpoint also its parent-code histogram.",
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
        if (got == 4 && !memcmp(magic, "GGUF", 4)) return inspect_gguf(p, all);
    }
    return inspect_st(p, all);
}
