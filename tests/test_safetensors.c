/*
 * test_safetensors.c — the safetensors reader and writer:
 *   - writer round trip with metadata and every dtype (scalars and empty
 *     tensors included), layout (widest dtype first, aligned), F16/BF16
 *     conversion bit patterns;
 *   - sharded HF directories (model.safetensors.index.json) and their errors;
 *   - each bad fixture in tests/fixtures gives a clear error naming the file
 *     (and tensor), and truncated or corrupted files never crash (ASan+UBSan
 *     via `make sanitize`).
 * Run from the repository root.
 */
#include "check.h"
#include "io/safetensors.h"

#include <string.h>

static char tmpdir[256];

static bool contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

static void write_plain(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) fprintf(stderr, "cannot write %s\n", path);
    if (f) fclose(f);
}

/* ------------------------------------------------------------ round trip */

static void test_round_trip(void) {
    float f32[6] = {1.0f, -2.5f, 0.0f, 3.14159265f, -1e-30f, 65504.0f};
    double f64[2] = {1e300, -0.125};
    uint16_t f16[6], bf16[6];
    for (int i = 0; i < 6; i++) {
        f16[i] = mq_f32_to_f16(f32[i]);
        bf16[i] = mq_f32_to_bf16(f32[i]);
    }
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    int8_t i8[3] = {-128, 0, 127};
    int16_t i16[2] = {-32768, 32767};
    int32_t i32[3] = {-7, 0, 2147483647};
    int64_t i64[1] = {INT64_MIN};
    uint8_t bools[4] = {1, 0, 0, 1};
    float scalar = 42.0f;
    mq_tensor t[] = {
        {"u8", MQ_DTYPE_U8, 1, {5}, u8, 5},
        {"f32", MQ_DTYPE_F32, 2, {2, 3}, f32, 24},
        {"f16", MQ_DTYPE_F16, 2, {3, 2}, f16, 12},
        {"bf16", MQ_DTYPE_BF16, 1, {6}, bf16, 12},
        {"f64", MQ_DTYPE_F64, 1, {2}, f64, 16},
        {"i8", MQ_DTYPE_I8, 1, {3}, i8, 3},
        {"i16", MQ_DTYPE_I16, 1, {2}, i16, 4},
        {"i32", MQ_DTYPE_I32, 3, {1, 3, 1}, i32, 12},
        {"i64", MQ_DTYPE_I64, 1, {1}, i64, 8},
        {"bool", MQ_DTYPE_BOOL, 2, {2, 2}, bools, 4},
        {"scalar", MQ_DTYPE_F32, 0, {0}, &scalar, 4},
        {"empty", MQ_DTYPE_F32, 2, {0, 4}, NULL, 0},
        {"model.layers.0.mlp.down_proj.weight", MQ_DTYPE_F32, 4, {1, 1, 2, 3}, f32, 24},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    mq_kv meta[] = {{"format", "pt"}, {"matquant.parent_bits", "8"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}};
    const char *path = check_path(tmpdir, "rt.safetensors");
    mq_status st = mq_st_write(path, t, n, meta, 3);
    CHECK(st == MQ_OK, "write: %s", mq_last_error());
    mq_st_file *f;
    st = mq_st_open(path, &f);
    CHECK(st == MQ_OK, "reopen: %s", mq_last_error());
    if (st) return;
    CHECK(mq_st_count(f) == n, "%d tensors", mq_st_count(f));
    CHECK(!strcmp(mq_st_path(f), path), "path kept");
    CHECK(mq_st_meta_count(f) == 3, "%d metadata entries", mq_st_meta_count(f));
    CHECK(contains(mq_st_meta(f, "format"), "pt") && !strcmp(mq_st_meta(f, "matquant.parent_bits"), "8") &&
              !strcmp(mq_st_meta(f, "note"), "caf\xc3\xa9 \"quoted\"\n"), "metadata values");
    CHECK(mq_st_meta(f, "absent") == NULL, "absent metadata key");
    const char *k, *v;
    mq_st_meta_at(f, 1, &k, &v);
    CHECK(!strcmp(k, "matquant.parent_bits") && !strcmp(v, "8"), "meta_at(1) = %s", k);
    for (int i = 0; i < n; i++) {
        const mq_tensor *r = mq_st_find(f, t[i].name);
        CHECK(r != NULL, "find %s", t[i].name);
        if (!r) continue;
        CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim && r->nbytes == t[i].nbytes, "%s dtype/ndim/bytes",
              t[i].name);
        for (int d = 0; d < t[i].ndim; d++) CHECK(r->shape[d] == t[i].shape[d], "%s shape[%d]", t[i].name, d);
        CHECK(!t[i].nbytes || !memcmp(r->data, t[i].data, t[i].nbytes), "%s bytes", t[i].name);
        CHECK((uintptr_t)r->data % mq_dtype_size(r->dtype) == 0, "%s aligned to its element size", t[i].name);
    }
    /* widest dtype first, given order within a width */
    CHECK(!strcmp(mq_st_at(f, 0)->name, "f64") && !strcmp(mq_st_at(f, 1)->name, "i64"), "8-byte dtypes first");
    CHECK(!strcmp(mq_st_at(f, n - 1)->name, "bool") && !strcmp(mq_st_at(f, n - 3)->name, "u8"), "1-byte last");
    CHECK(mq_st_at(f, n) == NULL && mq_st_at(f, -1) == NULL && mq_st_find(f, "nope") == NULL, "out of range");

    /* F16/BF16 conversion on the way out and back in */
    static const uint16_t want_f16[6] = {0x3C00, 0xC100, 0x0000, 0x4248, 0x8000, 0x7BFF};
    static const uint16_t want_bf16[6] = {0x3F80, 0xC020, 0x0000, 0x4049, 0x8DA2, 0x4780};
    const mq_tensor *h = mq_st_find(f, "f16"), *b = mq_st_find(f, "bf16");
    for (int i = 0; i < 6 && h && b; i++) {
        uint16_t x, y;
        memcpy(&x, (const uint8_t *)h->data + 2 * i, 2);
        memcpy(&y, (const uint8_t *)b->data + 2 * i, 2);
        CHECK(x == want_f16[i], "f16[%d] = 0x%04x want 0x%04x", i, x, want_f16[i]);
        CHECK(y == want_bf16[i], "bf16[%d] = 0x%04x want 0x%04x", i, y, want_bf16[i]);
    }
    float back[6], want[6] = {1.0f, -2.5f, 0.0f, 3.140625f, -0.0f, 65504.0f};
    CHECK(h && mq_convert_to_f32(h->data, MQ_DTYPE_F16, 6, back) == MQ_OK, "convert f16");
    CHECK_CLOSE("f16 -> f32", back, want, 6, 0, 0);
    float want_b[6] = {1.0f, -2.5f, 0.0f, 3.140625f, -9.984021e-31f, 65536.0f};
    CHECK(b && mq_convert_to_f32(b->data, MQ_DTYPE_BF16, 6, back) == MQ_OK, "convert bf16");
    CHECK_CLOSE("bf16 -> f32", back, want_b, 6, 0, 1e-3);
    mq_st_close(f);

    /* round to nearest even, NaN kept */
    CHECK(mq_f32_to_bf16(1.00390625f) == 0x3F80, "bf16 tie rounds to even (down)");
    CHECK(mq_f32_to_bf16(1.01171875f) == 0x3F82, "bf16 tie rounds to even (up)");
    CHECK(isnan(mq_bf16_to_f32(mq_f32_to_bf16(NAN))), "bf16 NaN kept");
    CHECK(mq_f32_to_f16(1.00048828125f) == 0x3C00 && mq_f32_to_f16(1e6f) == 0x7C00, "f16 tie and overflow");
    CHECK(isnan(mq_f16_to_f32(mq_f32_to_f16(NAN))), "f16 NaN kept");

    /* writer arguments */
    mq_tensor bad = {"x", MQ_DTYPE_F32, 1, {3}, f32, 8};
    st = mq_st_write(check_path(tmpdir, "bad.safetensors"), &bad, 1, NULL, 0);
    CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), "'x'") && contains(mq_last_error(), "8 bytes"),
          "nbytes mismatch: %s", mq_last_error());
    bad = (mq_tensor){"x", MQ_DTYPE_F32, 1, {-3}, f32, 8};
    st = mq_st_write(check_path(tmpdir, "bad.safetensors"), &bad, 1, NULL, 0);
    CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), "bad shape"), "negative dim: %s", mq_last_error());
    bad = (mq_tensor){"x", MQ_DTYPE_U8, 2, {(int64_t)1 << 62, 8}, u8, 5};
    st = mq_st_write(check_path(tmpdir, "bad.safetensors"), &bad, 1, NULL, 0);
    CHECK(st == MQ_ERR_ARG, "overflowing shape: %s", mq_last_error());
    mq_tensor two[2] = {{"x", MQ_DTYPE_U8, 1, {5}, u8, 5}, {"x", MQ_DTYPE_U8, 1, {5}, u8, 5}};
    st = mq_st_write(check_path(tmpdir, "bad.safetensors"), two, 2, NULL, 0);
    CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), "'x' given twice"), "dup: %s", mq_last_error());
    mq_kv dupm[2] = {{"a", "1"}, {"a", "2"}};
    st = mq_st_write(check_path(tmpdir, "bad.safetensors"), two, 1, dupm, 2);
    CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), "'a' given twice"), "dup meta: %s", mq_last_error());
    CHECK(!mq_file_exists(check_path(tmpdir, "bad.safetensors")), "nothing written on error");
    /* no tensors, no metadata: still a valid file */
    st = mq_st_write(check_path(tmpdir, "empty.safetensors"), NULL, 0, NULL, 0);
    CHECK(st == MQ_OK && mq_st_open(check_path(tmpdir, "empty.safetensors"), &f) == MQ_OK, "empty file: %s",
          mq_last_error());
    if (!st) {
        CHECK(mq_st_count(f) == 0 && mq_st_meta_count(f) == 0, "empty file has nothing");
        mq_st_close(f);
    }
}

/* ------------------------------------------------------------- shards */

static const char *mkdir_in(const char *name) {
    const char *d = check_path(tmpdir, name);
    mkdir(d, 0755);
    return d;
}

static void write_index(const char *dir, const char *json) {
    char *p = mq_path_join(dir, "model.safetensors.index.json");
    write_plain(p, json, strlen(json));
    free(p);
}

static void write_shard(const char *dir, const char *file, const mq_tensor *t, int n, const mq_kv *m, int nm) {
    char *p = mq_path_join(dir, file);
    mq_status st = mq_st_write(p, t, n, m, nm);
    CHECK(st == MQ_OK, "write %s: %s", p, mq_last_error());
    free(p);
}

static void expect_dir_error(const char *dir, const char *sub) {
    mq_st_set *s = (mq_st_set *)1;
    mq_status st = mq_st_open_dir(dir, &s);
    CHECK(st != MQ_OK && s == NULL, "%s opened without error", dir);
    CHECK(contains(mq_last_error(), sub), "%s: '%s' lacks '%s'", dir, mq_last_error(), sub);
}

static void test_shards(void) {
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    uint16_t c[3] = {0x3C00, 0x4000, 0x4200};
    mq_tensor s1[2] = {{"embed.weight", MQ_DTYPE_F32, 2, {2, 2}, a, 16}, {"norm.weight", MQ_DTYPE_F32, 1, {2}, b, 8}};
    mq_tensor s2[1] = {{"lm_head.weight", MQ_DTYPE_BF16, 1, {3}, c, 6}};
    mq_kv m[1] = {{"format", "pt"}};
    const char *d = mkdir_in("sharded");
    write_shard(d, "model-00001-of-00002.safetensors", s1, 2, m, 1);
    write_shard(d, "model-00002-of-00002.safetensors", s2, 1, NULL, 0);
    write_index(d, "{\"metadata\": {\"total_size\": 30}, \"weight_map\": {"
                   "\"embed.weight\": \"model-00001-of-00002.safetensors\","
                   "\"lm_head.weight\": \"model-00002-of-00002.safetensors\","
                   "\"norm.weight\": \"model-00001-of-00002.safetensors\"}}");
    mq_st_set *s;
    mq_status st = mq_st_open_dir(d, &s);
    CHECK(st == MQ_OK, "open sharded: %s", mq_last_error());
    if (!st) {
        CHECK(mq_st_set_count(s) == 3, "%d tensors", mq_st_set_count(s));
        const mq_tensor *t = mq_st_set_find(s, "lm_head.weight");
        CHECK(t && t->dtype == MQ_DTYPE_BF16 && t->shape[0] == 3 && !memcmp(t->data, c, 6), "lm_head from shard 2");
        t = mq_st_set_find(s, "norm.weight");
        CHECK(t && !memcmp(t->data, b, 8), "norm from shard 1");
        CHECK(mq_st_set_find(s, "nope") == NULL && mq_st_set_at(s, 3) == NULL, "absent");
        CHECK(mq_st_set_meta(s, "format") && !strcmp(mq_st_set_meta(s, "format"), "pt"), "first shard's metadata");
        mq_st_set_close(s);
    }
    /* single file directory */
    d = mkdir_in("single");
    write_shard(d, "model.safetensors", s1, 2, NULL, 0);
    st = mq_st_open_dir(d, &s);
    CHECK(st == MQ_OK && mq_st_set_count(s) == 2 && mq_st_set_meta(s, "format") == NULL, "single: %s",
          mq_last_error());
    if (!st) mq_st_set_close(s);

    d = mkdir_in("wrong_shard");
    write_shard(d, "a.safetensors", s1, 2, NULL, 0);
    write_shard(d, "b.safetensors", s2, 1, NULL, 0);
    write_index(d, "{\"weight_map\": {\"embed.weight\": \"a.safetensors\", \"lm_head.weight\": \"a.safetensors\"}}");
    expect_dir_error(d, "tensor 'lm_head.weight' is not in shard a.safetensors");
    write_index(d, "{\"weight_map\": {\"embed.weight\": \"a.safetensors\", \"x\": \"../b.safetensors\"}}");
    expect_dir_error(d, "weight_map entry 'x' must name a file in the directory");
    write_index(d, "{\"weight_map\": {\"embed.weight\": \"a.safetensors\", \"lm_head.weight\": \"c.safetensors\"}}");
    expect_dir_error(d, "c.safetensors: cannot open");
    write_index(d, "{\"weight_map\": {}}");
    expect_dir_error(d, "weight_map is empty");
    write_index(d, "{\"weight_map\": [1, 2]}");
    expect_dir_error(d, "\"weight_map\" object");
    write_index(d, "{\"weight_map\": ");
    expect_dir_error(d, "\"weight_map\" object");
    write_index(d, "{\"weight_map\": {\"embed.weight\": 7}}");
    expect_dir_error(d, "must name a file");
    d = mkdir_in("twice");
    write_shard(d, "a.safetensors", s1, 2, NULL, 0);
    write_shard(d, "b.safetensors", s1, 1, NULL, 0);
    write_index(d, "{\"weight_map\": {\"embed.weight\": \"a.safetensors\", \"norm.weight\": \"b.safetensors\"}}");
    expect_dir_error(d, "tensor 'embed.weight' is also in another shard");
    expect_dir_error(mkdir_in("nothing"), "no model.safetensors or model.safetensors.index.json");
}

/* ------------------------------------------------------------ bad files */

static void expect_bad(const char *file, const char *sub) {
    mq_st_file *f = (mq_st_file *)1;
    const char *path = check_path("tests/fixtures", file);
    mq_status st = mq_st_open(path, &f);
    CHECK(st != MQ_OK && f == NULL, "%s opened without error", file);
    CHECK(contains(mq_last_error(), file) && contains(mq_last_error(), sub), "%s: message '%s' lacks '%s'", file,
          mq_last_error(), sub);
}

static void test_bad_files(void) {
    expect_bad("st_truncated.safetensors", "tensor 'b': data_offsets [16, 24] exceed the data section (19 bytes)");
    expect_bad("st_truncated_header.safetensors", "exceeds the file (20 bytes)");
    expect_bad("st_huge_header.safetensors", "header length 4611686018427387904 exceeds");
    expect_bad("st_overlap.safetensors", "overlap");
    expect_bad("st_bad_dtype.safetensors", "tensor 'x.weight': unknown dtype \"F31\"");
    expect_bad("st_shape_mismatch.safetensors", "tensor 'x.weight': F32 shape needs 16 bytes but data_offsets span 12");
    expect_bad("st_offsets_outside.safetensors",
               "tensor 'x.weight': data_offsets [0, 100] exceed the data section (64 bytes)");
    expect_bad("st_negative_shape.safetensors", "tensor 'x.weight': shape entry 0 is not a non-negative integer");
    expect_bad("st_not_json.safetensors", "not a JSON object");
    expect_bad("st_not_object.safetensors", "not a JSON object");
    expect_bad("st_duplicate.safetensors", "tensor 'x' appears twice");
    expect_bad("st_bad_utf8.safetensors", "not valid UTF-8");
    expect_bad("no_such_file.safetensors", "cannot open");
    mq_st_file *f = (mq_st_file *)1;
    CHECK(mq_st_open("tests/fixtures", &f) == MQ_ERR_IO && f == NULL && contains(mq_last_error(), "directory"),
          "a directory: %s", mq_last_error());

    /* NaN-laden but valid: the reader accepts it (NaN checks are the loader's) */
    mq_status st = mq_st_open("tests/fixtures/nan.safetensors", &f);
    CHECK(st == MQ_OK, "nan.safetensors: %s", mq_last_error());
    if (!st) {
        const mq_tensor *t = mq_st_find(f, "w");
        float x[6];
        CHECK(t && t->dtype == MQ_DTYPE_F32 && mq_tensor_numel(t) == 6, "nan.safetensors tensor w");
        if (t) memcpy(x, t->data, sizeof x);
        CHECK(t && mq_find_nonfinite(x, 6) == 1, "NaN at element 1");
        CHECK(mq_st_meta(f, "note") != NULL, "metadata of nan.safetensors");
        mq_st_close(f);
    }
}

/* Prefixes and byte corruptions of a good file open cleanly or fail with a
 * message; never crash. */
static void test_corruption(void) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint16_t h[4] = {1, 2, 3, 4};
    mq_tensor t[3] = {{"a", MQ_DTYPE_F32, 2, {2, 4}, a, 32}, {"h", MQ_DTYPE_F16, 1, {4}, h, 8},
                      {"s", MQ_DTYPE_I32, 0, {0}, a, 4}};
    mq_kv m[1] = {{"k", "v"}};
    const char *good = check_path(tmpdir, "good.safetensors");
    CHECK(mq_st_write(good, t, 3, m, 1) == MQ_OK, "write good: %s", mq_last_error());
    char *bytes;
    size_t len;
    if (mq_read_file(good, &bytes, &len)) return;
    const char *p = check_path(tmpdir, "corrupt.safetensors");
    int silent = 0;
    for (size_t n = 0; n < len; n++) {
        write_plain(p, bytes, n);
        mq_st_file *f;
        if (mq_st_open(p, &f) == MQ_OK) {
            silent++;
            mq_st_close(f);
        }
    }
    CHECK(silent == 0, "%d truncated copies opened", silent);
    char *copy = malloc(len);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, bytes, len);
        for (int k = 0; k < 1 + it % 2; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % (len - 44));
            static const char alphabet[] = "0123456789[]{}\",:-.eE \x80\xff";
            copy[at] = it % 3 ? alphabet[(rng >> 32) % (sizeof alphabet - 1)] : (char)(rng >> 40);
        }
        write_plain(p, copy, len);
        mq_st_file *f;
        if (mq_st_open(p, &f) == MQ_OK) {
            opened++;
            volatile uint8_t sum = 0;
            for (int i = 0; i < mq_st_count(f); i++) {
                const mq_tensor *x = mq_st_at(f, i);
                for (size_t b = 0; b < x->nbytes; b++) sum += ((const uint8_t *)x->data)[b];
            }
            mq_st_close(f);
        }
    }
    CHECK(opened < 3000, "no corruption was noticed");
    free(copy);
    free(bytes);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mq_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_shards();
    test_bad_files();
    test_corruption();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_safetensors");
}
