/*
 * test_gguf.c — the GGUF reader, writer and dequantization:
 *   - every dequantized type against gguf-py's numpy reference
 *     (tests/golden/gguf_quants*.{gguf,safetensors}, scripts/make_io_fixtures.py);
 *   - the writer round trip (every metadata setter, F32/F16 tensors, alignment);
 *   - each bad fixture in tests/fixtures gives a clear error, and truncated or
 *     corrupted copies of a good file never crash (run under ASan+UBSan by
 *     `make sanitize`);
 *   - the real SmolLM2-135M Q4_1 GGUF, when present, against
 *     tests/golden/smollm2_q4_1_expected.json (SKIP otherwise).
 * Run from the repository root.
 */
#include "check.h"
#include "io/gguf.h"
#include "io/safetensors.h"

#include <cJSON.h>
#include <string.h>

static char tmpdir[256];

static const char *tmp_path(const char *name) { return check_path(tmpdir, name); }

static bool contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

/* plain (not fsync'ed) write, for the thousands of corrupted copies */
static void write_plain(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) fprintf(stderr, "cannot write %s\n", path);
    if (f) fclose(f);
}

/* ------------------------------------------------------- golden dequant */

static void test_dequant_golden(void) {
    static const char *names[] = {"f32", "f16", "bf16", "f64", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                                  "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    mq_gguf *g;
    mq_st_file *ex;
    mq_status st = mq_gguf_open("tests/golden/gguf_quants.gguf", &g);
    CHECK(st == MQ_OK, "open golden gguf: %s", mq_last_error());
    if (st) return;
    st = mq_st_open("tests/golden/gguf_quants_expected.safetensors", &ex);
    CHECK(st == MQ_OK, "open expected values: %s", mq_last_error());
    if (st) {
        mq_gguf_close(g);
        return;
    }
    const char *arch;
    size_t alen;
    CHECK(mq_gguf_get_str(g, "general.architecture", &arch, &alen) && alen == 4 && !memcmp(arch, "test", 4),
          "general.architecture of the golden file");
    CHECK(mq_gguf_n_tensors(g) == 14, "%d tensors", mq_gguf_n_tensors(g));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const mq_gguf_tensor *t = mq_gguf_find_tensor(g, names[i]);
        const mq_tensor *e = mq_st_find(ex, names[i]);
        CHECK(t && e, "tensor %s in both golden files", names[i]);
        if (!t || !e) continue;
        CHECK(t->ndim == 2 && t->ne[0] == 512 && t->ne[1] == 2, "%s dims", names[i]);
        CHECK(e->dtype == MQ_DTYPE_F32 && mq_tensor_numel(e) == 1024, "%s expected shape", names[i]);
        CHECK(!strcmp(mq_ggml_type_name(t->type), names[i]) || !strcasecmp(mq_ggml_type_name(t->type), names[i]),
              "type name %s for %s", mq_ggml_type_name(t->type), names[i]);
        float got[1024], row[512], want[1024];
        memcpy(want, e->data, sizeof want);
        st = mq_gguf_dequant(t, got);
        CHECK(st == MQ_OK, "dequant %s: %s", names[i], mq_last_error());
        char what[64];
        snprintf(what, sizeof what, "dequant %s vs gguf-py", names[i]);
        CHECK_CLOSE(what, got, want, 1024, 1e-7, 1e-6);
        st = mq_gguf_dequant_rows(t, 1, 1, row);
        CHECK(st == MQ_OK, "dequant_rows %s: %s", names[i], mq_last_error());
        snprintf(what, sizeof what, "dequant_rows(1, 1) %s", names[i]);
        CHECK_CLOSE(what, row, want + 512, 512, 1e-7, 1e-6);
        st = mq_gguf_dequant_rows(t, 1, 2, row);
        CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), names[i]), "rows out of range: %s", mq_last_error());
    }
    /* a type we can read but not dequantize */
    mq_gguf_tensor q81 = {.name = "x.q81", .type = MQ_GGML_Q8_1, .ndim = 1, .ne = {32, 1, 1, 1}};
    uint8_t blk[36] = {0};
    q81.data = blk;
    q81.nbytes = sizeof blk;
    float out[32];
    st = mq_gguf_dequant(&q81, out);
    CHECK(st == MQ_ERR_UNSUPPORTED && contains(mq_last_error(), "x.q81") && contains(mq_last_error(), "Q8_1"),
          "unsupported type: %s", mq_last_error());
    mq_st_close(ex);
    mq_gguf_close(g);
}

/* ------------------------------------------------------ writer round trip */

static void test_writer_round_trip(void) {
    mq_gguf_writer *w = mq_gguf_writer_new();
    static const char *const strs[] = {"<s>", "</s>", "h\xc3\xa9llo", "", "a\"b"};
    float fa[3] = {0.5f, -1.25f, 3e-8f};
    int32_t ia[4] = {-1, 0, 7, 2147483647};
    mq_gguf_set_str(w, "general.architecture", "llama");
    mq_gguf_set_u32(w, "llama.block_count", 30);
    mq_gguf_set_i32(w, "test.neg", -5);
    mq_gguf_set_f32(w, "llama.rope.freq_base", 10000.5f);
    mq_gguf_set_bool(w, "test.flag", true);
    mq_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, 5);
    mq_gguf_set_arr_f32(w, "tokenizer.ggml.scores", fa, 3);
    mq_gguf_set_arr_i32(w, "tokenizer.ggml.token_type", ia, 4);
    float a[6 * 5], b[2 * 3 * 4];
    for (int i = 0; i < 30; i++) a[i] = (float)i * 0.37f - 4.0f;
    for (int i = 0; i < 24; i++) b[i] = (float)(i - 12) / 8.0f; /* exact in f16 */
    b[5] = 65504.0f;                                           /* f16 max */
    b[6] = 1e-7f;                                              /* f16 subnormal range */
    int64_t ne_a[2] = {5, 6}, ne_b[3] = {4, 3, 2}, ne_c[1] = {0};
    CHECK(mq_gguf_add_tensor(w, "a.weight", a, 2, ne_a, MQ_GGML_F32) == MQ_OK, "add a: %s", mq_last_error());
    CHECK(mq_gguf_add_tensor(w, "b.weight", b, 3, ne_b, MQ_GGML_F16) == MQ_OK, "add b: %s", mq_last_error());
    CHECK(mq_gguf_add_tensor(w, "empty", NULL, 1, ne_c, MQ_GGML_F32) == MQ_OK, "add empty: %s", mq_last_error());
    CHECK(mq_gguf_add_tensor(w, "a.weight", a, 2, ne_a, MQ_GGML_F32) == MQ_ERR_ARG &&
              contains(mq_last_error(), "'a.weight' added twice"), "duplicate tensor: %s", mq_last_error());
    CHECK(mq_gguf_add_tensor(w, "q", a, 1, ne_a, MQ_GGML_Q4_0) == MQ_ERR_ARG && contains(mq_last_error(), "Q4_0"),
          "quantized type refused: %s", mq_last_error());
    CHECK(mq_gguf_add_tensor(w, "q", a, 5, ne_a, MQ_GGML_F32) == MQ_ERR_ARG, "5 dims refused");
    const char *path = tmp_path("rt.gguf");
    mq_status st = mq_gguf_write(w, path);
    CHECK(st == MQ_OK, "write: %s", mq_last_error());
    mq_gguf_writer_free(w);

    mq_gguf *g;
    st = mq_gguf_open(path, &g);
    CHECK(st == MQ_OK, "reopen: %s", mq_last_error());
    if (st) return;
    CHECK(mq_gguf_version(g) == 3, "version %u", mq_gguf_version(g));
    CHECK(mq_gguf_n_kv(g) == 8 && mq_gguf_n_tensors(g) == 3, "%d kv, %d tensors", mq_gguf_n_kv(g),
          mq_gguf_n_tensors(g));
    uint32_t u;
    int64_t i64;
    float f;
    bool bl;
    const char *s;
    size_t len;
    uint32_t et;
    uint64_t n;
    CHECK(mq_gguf_get_str(g, "general.architecture", &s, &len) && len == 5 && !memcmp(s, "llama", 5), "str");
    CHECK(mq_gguf_get_u32(g, "llama.block_count", &u) && u == 30, "u32");
    CHECK(mq_gguf_get_i64(g, "llama.block_count", &i64) && i64 == 30, "u32 as i64");
    CHECK(mq_gguf_get_i64(g, "test.neg", &i64) && i64 == -5, "i32");
    CHECK(!mq_gguf_get_u32(g, "test.neg", &u), "negative i32 does not convert to u32");
    CHECK(mq_gguf_get_f32(g, "llama.rope.freq_base", &f) && f == 10000.5f, "f32");
    CHECK(mq_gguf_get_f32(g, "llama.block_count", &f) && f == 30.0f, "int converts to float");
    CHECK(!mq_gguf_get_u32(g, "llama.rope.freq_base", &u), "float does not convert to int");
    CHECK(mq_gguf_get_bool(g, "test.flag", &bl) && bl, "bool");
    CHECK(!mq_gguf_get_str(g, "llama.block_count", &s, &len), "u32 is not a string");
    CHECK(!mq_gguf_get_u32(g, "no.such.key", &u) && mq_gguf_find_key(g, "no.such.key") == -1, "absent key");
    CHECK(mq_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == MQ_GGUF_STRING && n == 5, "str array");
    CHECK(mq_gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s, &len) && len == 6 && !memcmp(s, "h\xc3\xa9llo", 6),
          "str array element");
    CHECK(mq_gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &len) && len == 0, "empty string element");
    CHECK(!mq_gguf_arr_str(g, "tokenizer.ggml.tokens", 5, &s, &len), "index past the end");
    CHECK(mq_gguf_arr_f32(g, "tokenizer.ggml.scores", 2, &f) && f == 3e-8f, "f32 array element");
    CHECK(mq_gguf_arr_i64(g, "tokenizer.ggml.token_type", 3, &i64) && i64 == 2147483647, "i32 array element");
    CHECK(mq_gguf_arr_i64(g, "tokenizer.ggml.token_type", 0, &i64) && i64 == -1, "negative i32 element");
    CHECK(!mq_gguf_arr_i64(g, "tokenizer.ggml.scores", 0, &i64), "f32 array is not an int array");
    char d[256];
    int k = mq_gguf_find_key(g, "llama.block_count");
    mq_gguf_kv_describe(g, k, d, sizeof d);
    CHECK(!strcmp(d, "u32 = 30"), "describe u32: %s", d);
    mq_gguf_kv_describe(g, mq_gguf_find_key(g, "tokenizer.ggml.tokens"), d, sizeof d);
    CHECK(contains(d, "arr[str,5]") && contains(d, "\"<s>\"") && contains(d, "..."), "describe str array: %s", d);
    mq_gguf_kv_describe(g, mq_gguf_find_key(g, "test.flag"), d, sizeof d);
    CHECK(!strcmp(d, "bool = true"), "describe bool: %s", d);
    char tiny[8];
    mq_gguf_kv_describe(g, mq_gguf_find_key(g, "tokenizer.ggml.tokens"), tiny, sizeof tiny);
    CHECK(strlen(tiny) < sizeof tiny, "describe truncates to its buffer");

    const mq_gguf_tensor *ta = mq_gguf_find_tensor(g, "a.weight"), *tb = mq_gguf_find_tensor(g, "b.weight");
    CHECK(ta && tb && mq_gguf_find_tensor(g, "nope") == NULL, "find tensors");
    if (ta && tb) {
        CHECK(ta->type == MQ_GGML_F32 && ta->ndim == 2 && ta->ne[0] == 5 && ta->ne[1] == 6 && ta->nbytes == 120,
              "a info");
        CHECK(tb->type == MQ_GGML_F16 && tb->ndim == 3 && tb->ne[2] == 2 && mq_gguf_tensor_numel(tb) == 24 &&
                  tb->nbytes == 48, "b info");
        const mq_gguf_tensor *t0 = mq_gguf_tensor_at(g, 0);
        CHECK(((uintptr_t)ta->data - (uintptr_t)t0->data) % 32 == 0 &&
                  ((uintptr_t)tb->data - (uintptr_t)t0->data) % 32 == 0, "tensor data aligned to 32");
        float ga[30], gb[24], wb[24];
        CHECK(mq_gguf_dequant(ta, ga) == MQ_OK, "dequant a");
        CHECK_CLOSE("F32 round trip", ga, a, 30, 0, 0);
        CHECK(mq_gguf_dequant(tb, gb) == MQ_OK, "dequant b");
        for (int i = 0; i < 24; i++) wb[i] = mq_f16_to_f32(mq_f32_to_f16(b[i]));
        CHECK_CLOSE("F16 round trip", gb, wb, 24, 0, 0);
        CHECK(gb[0] == -1.5f && gb[5] == 65504.0f, "F16 exact values %g %g", gb[0], gb[5]);
        CHECK(fabsf(gb[6] - 1e-7f) < 6e-8f, "F16 subnormal %g", gb[6]);
    }
    mq_gguf_close(g);

    /* metadata errors surface at write time, naming the key; nothing is written */
    w = mq_gguf_writer_new();
    mq_gguf_set_u32(w, "k", 1);
    mq_gguf_set_str(w, "k", "again");
    st = mq_gguf_write(w, tmp_path("dup.gguf"));
    CHECK(st == MQ_ERR_ARG && contains(mq_last_error(), "'k' set twice"), "duplicate key: %s", mq_last_error());
    CHECK(!mq_file_exists(tmp_path("dup.gguf")), "nothing written after an error");
    mq_gguf_writer_free(w);

    /* a custom alignment is honoured */
    w = mq_gguf_writer_new();
    mq_gguf_set_u32(w, "general.alignment", 64);
    CHECK(mq_gguf_add_tensor(w, "x", a, 1, ne_a, MQ_GGML_F32) == MQ_OK, "add x");
    CHECK(mq_gguf_add_tensor(w, "y", a, 1, ne_a, MQ_GGML_F16) == MQ_OK, "add y");
    st = mq_gguf_write(w, tmp_path("al64.gguf"));
    mq_gguf_writer_free(w);
    CHECK(st == MQ_OK && mq_gguf_open(tmp_path("al64.gguf"), &g) == MQ_OK, "alignment 64: %s", mq_last_error());
    if (!st) {
        const mq_gguf_tensor *y = mq_gguf_find_tensor(g, "y");
        CHECK(y && ((uintptr_t)y->data - (uintptr_t)mq_gguf_tensor_at(g, 0)->data) == 64, "y at offset 64");
        mq_gguf_close(g);
    }
}

/* ------------------------------------------------------------ bad files */

static void expect_bad(const char *file, const char *sub) {
    mq_gguf *g = (mq_gguf *)1;
    const char *path = check_path("tests/fixtures", file);
    mq_status st = mq_gguf_open(path, &g);
    CHECK(st != MQ_OK && g == NULL, "%s opened without error", file);
    CHECK(contains(mq_last_error(), file) && contains(mq_last_error(), sub), "%s: message '%s' lacks '%s'", file,
          mq_last_error(), sub);
}

static void test_bad_files(void) {
    expect_bad("gguf_truncated.gguf", "truncated");
    expect_bad("gguf_bad_magic.gguf", "bad magic");
    expect_bad("gguf_huge_string.gguf", "absurd length");
    expect_bad("gguf_offset_outside.gguf", "outside the file's data section");
    expect_bad("gguf_unknown_type.gguf", "unknown ggml type 99");
    expect_bad("gguf_bad_version.gguf", "version 7");
    expect_bad("gguf_huge_count.gguf", "cannot fit");
    expect_bad("gguf_overlap.gguf", "overlap");
    expect_bad("gguf_huge_array.gguf", "exceeds the file");
    expect_bad("no_such_file.gguf", "cannot open");

    /* NaN-laden but valid: the reader accepts it, the NaN is visible after dequant */
    mq_gguf *g;
    mq_status st = mq_gguf_open("tests/fixtures/nan.gguf", &g);
    CHECK(st == MQ_OK, "nan.gguf: %s", mq_last_error());
    if (!st) {
        float x[8];
        const mq_gguf_tensor *t = mq_gguf_find_tensor(g, "w");
        CHECK(t && mq_gguf_dequant(t, x) == MQ_OK && mq_find_nonfinite(x, 8) == 1, "NaN at element 1");
        mq_gguf_close(g);
    }
}

/* Every prefix of the start of a good file, and single-byte corruptions of its
 * header, must open cleanly or fail with a message: never crash. */
static void test_corruption(void) {
    mq_map m;
    if (mq_map_file("tests/golden/gguf_quants.gguf", &m)) {
        CHECK(0, "map golden: %s", mq_last_error());
        return;
    }
    uint8_t *copy = malloc(m.size);
    memcpy(copy, m.data, m.size);
    const char *p = tmp_path("corrupt.gguf");
    int failed_ok = 0, silent = 0;
    for (size_t len = 0; len < m.size; len += len < 1200 ? 1 : 509) {
        write_plain(p, copy, len);
        mq_gguf *g;
        if (mq_gguf_open(p, &g) == MQ_OK) {
            silent++;
            mq_gguf_close(g);
        } else if (mq_last_error()[0]) {
            failed_ok++;
        }
    }
    CHECK(silent == 0, "%d truncated copies opened without error", silent);
    CHECK(failed_ok > 1000, "%d truncated copies failed with a message", failed_ok);
    uint64_t rng = 88172645463325252ull;
    size_t hdr = 1100; /* header, metadata and tensor infos */
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, m.data, m.size);
        for (int k = 0; k < 1 + it % 3; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % hdr);
            copy[at] = (uint8_t)(it % 5 == 0 ? 0xFF : rng >> 32);
        }
        write_plain(p, copy, m.size);
        mq_gguf *g;
        if (mq_gguf_open(p, &g) == MQ_OK) {
            opened++;
            float buf[4096];
            char d[128];
            for (int i = 0; i < mq_gguf_n_kv(g); i++) mq_gguf_kv_describe(g, i, d, sizeof d);
            for (int i = 0; i < mq_gguf_n_tensors(g); i++) {
                const mq_gguf_tensor *t = mq_gguf_tensor_at(g, i);
                if (mq_gguf_tensor_numel(t) <= 4096) mq_gguf_dequant(t, buf);
            }
            mq_gguf_close(g);
        }
    }
    CHECK(opened < 3000, "every corruption went unnoticed (%d)", opened);
    free(copy);
    mq_unmap(&m);
}

/* ------------------------------------------------------ the real model */

static void test_real_model(void) {
    const char *home = getenv("HOME");
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
    if (!mq_file_exists(path)) {
        SKIP("%s not found (scripts/get-models.sh fetches it): real-model checks skipped", path);
        return;
    }
    char *text;
    size_t tl;
    if (mq_read_file("tests/golden/smollm2_q4_1_expected.json", &text, &tl)) {
        CHECK(0, "golden json: %s", mq_last_error());
        return;
    }
    cJSON *j = cJSON_ParseWithLength(text, tl);
    free(text);
    mq_gguf *g;
    mq_status st = mq_gguf_open(path, &g);
    CHECK(st == MQ_OK && j, "open %s: %s", path, mq_last_error());
    if (st || !j) {
        cJSON_Delete(j);
        if (!st) mq_gguf_close(g);
        return;
    }
    CHECK((int)mq_gguf_version(g) == cJSON_GetObjectItem(j, "version")->valueint, "version");
    CHECK(mq_gguf_n_tensors(g) == cJSON_GetObjectItem(j, "n_tensors")->valueint, "%d tensors", mq_gguf_n_tensors(g));
    CHECK(mq_gguf_n_kv(g) == cJSON_GetObjectItem(j, "n_kv")->valueint, "%d kv", mq_gguf_n_kv(g));
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "u32")) {
        uint32_t u = 0;
        CHECK(mq_gguf_get_u32(g, e->string, &u) && u == (uint32_t)e->valuedouble, "%s = %u", e->string, u);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "f32")) {
        float f = 0;
        CHECK(mq_gguf_get_f32(g, e->string, &f) && f == (float)e->valuedouble, "%s = %g", e->string, f);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "str")) {
        const char *s = NULL;
        size_t len = 0;
        CHECK(mq_gguf_get_str(g, e->string, &s, &len) && len == strlen(e->valuestring) &&
                  !memcmp(s, e->valuestring, len), "%s = %.*s", e->string, (int)len, s ? s : "");
    }
    uint32_t et;
    uint64_t n;
    CHECK(mq_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == MQ_GGUF_STRING &&
              n == (uint64_t)cJSON_GetObjectItem(j, "n_tokens")->valueint, "49152 tokens");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "tokens")) {
        const char *s = NULL;
        size_t len = 0;
        CHECK(mq_gguf_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)atoll(e->string), &s, &len) &&
                  len == strlen(e->valuestring) && !memcmp(s, e->valuestring, len), "token %s", e->string);
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "tensors")) {
        const mq_gguf_tensor *t = mq_gguf_find_tensor(g, e->string);
        CHECK(t != NULL, "tensor %s", e->string);
        if (!t) continue;
        CHECK(!strcmp(mq_ggml_type_name(t->type), cJSON_GetObjectItem(e, "type")->valuestring), "%s type %s",
              e->string, mq_ggml_type_name(t->type));
        CHECK(t->nbytes == (size_t)cJSON_GetObjectItem(e, "nbytes")->valuedouble, "%s nbytes", e->string);
        const cJSON *ne = cJSON_GetObjectItem(e, "ne");
        for (int d = 0; d < cJSON_GetArraySize(ne); d++)
            CHECK(t->ne[d] == (int64_t)cJSON_GetArrayItem(ne, d)->valuedouble, "%s ne[%d]", e->string, d);
        int64_t numel = mq_gguf_tensor_numel(t);
        float *x = malloc((size_t)numel * sizeof *x);
        CHECK(mq_gguf_dequant(t, x) == MQ_OK, "dequant %s: %s", e->string, mq_last_error());
        double sum = 0, asum = 0;
        for (int64_t i = 0; i < numel; i++) {
            sum += x[i];
            asum += fabs(x[i]);
        }
        double want_sum = cJSON_GetObjectItem(e, "sum")->valuedouble;
        double want_asum = cJSON_GetObjectItem(e, "abs_sum")->valuedouble;
        CHECK(fabs(sum - want_sum) <= 1e-6 * want_asum + 1e-9, "%s sum %.9g want %.9g", e->string, sum, want_sum);
        CHECK(fabs(asum - want_asum) <= 1e-7 * want_asum, "%s abs sum %.9g want %.9g", e->string, asum, want_asum);
        const cJSON *idx = cJSON_GetObjectItem(e, "idx"), *val = cJSON_GetObjectItem(e, "values");
        for (int k = 0; k < cJSON_GetArraySize(idx); k++) {
            int64_t i = (int64_t)cJSON_GetArrayItem(idx, k)->valuedouble;
            float want = (float)cJSON_GetArrayItem(val, k)->valuedouble;
            CHECK(i < numel && fabsf(x[i] - want) <= 1e-6f * fabsf(want), "%s[%lld] = %.9g want %.9g", e->string,
                  (long long)i, x[i], want);
        }
        free(x);
    }
    cJSON_Delete(j);
    mq_gguf_close(g);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mq_test_gguf_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_dequant_golden();
    test_writer_round_trip();
    test_bad_files();
    test_corruption();
    test_real_model();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_gguf");
}
