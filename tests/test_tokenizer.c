/*
 * test_tokenizer.c — the tokenizers against golden tokenizations.
 *
 *  - tests/golden/tokenizers/<name>/{tokenizer.json,pairs.json}: five small
 *    vocabularies trained with HF `tokenizers` (scripts/make_tokenizer_golden.py):
 *    every text encodes to exactly the HF ids, decodes to HF's decode, and
 *    decode(encode(x)) == x where HF round-trips;
 *  - the same pairs through GGUF vocabularies (llama3.gguf: gpt2/llama-bpe,
 *    spm.gguf: llama/scores), and SmolLM2's real vocab when its GGUF exists;
 *  - llama2.c: stories260K golden encodings, and the Llama-2 tokenizer.bin
 *    giving WikiText-2 test exactly 341,468 tokens (timed);
 *  - tokenizer.json written back by mq_tokenizer_save_json encodes the same;
 *  - UTF-8 streaming of split multi-byte characters;
 *  - bad files (tests/fixtures/tokenizer_*) give errors naming the file.
 * Covers text/tokenizer.c, text/tok_load.c and text/tok_save_spm.c.
 */
#include "check.h"
/* Not a speed test (speed is bench/ business, and the machine may be shared):
 * a bound 20-50x above the measured times that only a pathological (e.g.
 * quadratic) encoder would exceed on wikitext-2. */
#define MQ_ENCODE_HANG_MS 60000
#include "text/tokenizer.h"

#include <cJSON.h>

#define GOLD "tests/golden/tokenizers"

static void print_ids(const char *what, const int32_t *v, size_t n, size_t from) {
    fprintf(stderr, "    %s[%zu..]:", what, from);
    for (size_t i = from; i < n && i < from + 12; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "\n");
}

/* Encode every pair's text and compare with its ids (and its decode).
 * ids_key selects the expected ids ("ids"); returns the number of mismatches. */
static int check_pairs(const mq_tokenizer *t, const char *label, const cJSON *pairs, bool check_decode) {
    int bad = 0, nbad_dec = 0, n = 0;
    const cJSON *p;
    if (cJSON_IsObject(pairs)) pairs = cJSON_GetObjectItem(pairs, "pairs"); /* {"gguf", "pairs"} */
    cJSON_ArrayForEach(p, pairs) {
        const char *text = cJSON_GetObjectItem(p, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(p, "ids");
        size_t nw = (size_t)cJSON_GetArraySize(want);
        int32_t *w = malloc((nw + 1) * sizeof *w);
        for (size_t i = 0; i < nw; i++) w[i] = cJSON_GetArrayItem(want, (int)i)->valueint;
        int32_t *ids = NULL;
        size_t nids = 0;
        mq_status st = mq_tokenizer_encode(t, text, strlen(text), true, &ids, &nids);
        size_t d = 0;
        while (st == MQ_OK && d < nids && d < nw && ids[d] == w[d]) d++;
        bool ok = st == MQ_OK && nids == nw && d == nw;
        n++;
        if (!ok) {
            bad++;
            fprintf(stderr, "FAIL %s: \"%.60s\": %s; %zu ids, want %zu; first difference at %zu\n", label, text,
                    st ? mq_last_error() : "ok", nids, nw, d);
            print_ids("got ", ids, nids, d > 2 ? d - 2 : 0);
            print_ids("want", w, nw, d > 2 ? d - 2 : 0);
        }
        const cJSON *dec = cJSON_GetObjectItem(p, "decoded");
        if (check_decode && dec) {
            char *s = mq_tokenizer_decode(t, w, nw);
            /* the contract drops the space after BOS, HF's Strip only at the start */
            bool after_bos = false;
            for (size_t i = 0; i + 1 < nw; i++) after_bos |= w[i] == mq_tokenizer_bos(t);
            if (strcmp(s, dec->valuestring) && !after_bos) {
                nbad_dec++;
                fprintf(stderr, "FAIL %s decode: \"%.60s\" -> \"%.60s\", want \"%.60s\"\n", label, text, s,
                        dec->valuestring);
            }
            if (!strcmp(dec->valuestring, text) && ok) {
                char *r = mq_tokenizer_decode(t, ids, nids);
                if (strcmp(r, text)) {
                    nbad_dec++;
                    fprintf(stderr, "FAIL %s round trip: \"%.60s\" -> \"%.60s\"\n", label, text, r);
                }
                free(r);
            }
            free(s);
        }
        free(ids);
        free(w);
    }
    CHECK(bad == 0, "%s: %d of %d texts encode differently", label, bad, n);
    if (check_decode) CHECK(nbad_dec == 0, "%s: %d decode mismatches", label, nbad_dec);
    return bad;
}

static void test_json(const char *name) {
    char path[256], pp[256], label[64];
    snprintf(path, sizeof path, GOLD "/%s/tokenizer.json", name);
    snprintf(pp, sizeof pp, GOLD "/%s/pairs.json", name);
    snprintf(label, sizeof label, "%s (tokenizer.json)", name);
    mq_tokenizer *t = NULL;
    mq_status st = mq_tokenizer_load_json(path, &t);
    CHECK(st == MQ_OK, "load %s: %s", path, mq_last_error());
    cJSON *pairs = check_read_json(pp);
    CHECK(pairs != NULL, "%s unreadable", pp);
    if (st || !pairs) { mq_tokenizer_free(t); cJSON_Delete(pairs); return; }
    check_pairs(t, label, pairs, true);
    /* written back as tokenizer.json, it encodes the same */
    char out[256];
    snprintf(out, sizeof out, "/tmp/mq_test_tok_%d_%s.json", (int)getpid(), name);
    st = mq_tokenizer_save_json(t, out);
    CHECK(st == MQ_OK, "save %s: %s", out, mq_last_error());
    mq_tokenizer *t2 = NULL;
    if (!st) {
        st = mq_tokenizer_load_json(out, &t2);
        CHECK(st == MQ_OK, "reload %s: %s", out, mq_last_error());
        snprintf(label, sizeof label, "%s (saved and reloaded)", name);
        if (!st) check_pairs(t2, label, pairs, false);
        remove(out);
    }
    mq_tokenizer_free(t2);
    mq_tokenizer_free(t);
    cJSON_Delete(pairs);
}

static mq_tokenizer *load_gguf_tok(const char *path) {
    mq_gguf *g = NULL;
    mq_status st = mq_gguf_open(path, &g);
    CHECK(st == MQ_OK, "open %s: %s", path, mq_last_error());
    if (st) return NULL;
    mq_tokenizer *t = NULL;
    st = mq_tokenizer_load_gguf(g, &t);
    CHECK(st == MQ_OK, "tokenizer from %s: %s", path, mq_last_error());
    mq_gguf_close(g);
    return t;
}

static void test_gguf(const char *file, const char *pairs_name, const char *kind) {
    char path[256], pp[256];
    snprintf(path, sizeof path, GOLD "/%s", file);
    snprintf(pp, sizeof pp, GOLD "/%s/pairs.json", pairs_name);
    mq_tokenizer *t = load_gguf_tok(path);
    cJSON *pairs = check_read_json(pp);
    if (t && pairs) {
        CHECK(!strcmp(mq_tokenizer_kind(t), kind), "%s kind %s, want %s", file, mq_tokenizer_kind(t), kind);
        CHECK(mq_tokenizer_add_bos(t) && mq_tokenizer_bos(t) >= 0, "%s: add_bos/bos", file);
        check_pairs(t, file, pairs, true);
        char out[256], label[96];
        snprintf(out, sizeof out, "/tmp/mq_test_tok_%d_%s.json", (int)getpid(), pairs_name);
        snprintf(label, sizeof label, "%s saved as json", file);
        mq_status st = mq_tokenizer_save_json(t, out);
        CHECK(st == MQ_OK, "save %s: %s", out, mq_last_error());
        mq_tokenizer *t2 = NULL;
        if (!st && !(st = mq_tokenizer_load_json(out, &t2))) check_pairs(t2, label, pairs, false);
        CHECK(st == MQ_OK, "reload %s: %s", out, mq_last_error());
        mq_tokenizer_free(t2);
        remove(out);
    }
    mq_tokenizer_free(t);
    cJSON_Delete(pairs);
}

static double encode_timed(const mq_tokenizer *t, const char *text, size_t len, size_t *n, bool roundtrip,
                           const char *label) {
    int32_t *ids = NULL;
    double t0 = mq_now_ms();
    mq_status st = mq_tokenizer_encode(t, text, len, false, &ids, n);
    double ms = mq_now_ms() - t0;
    CHECK(st == MQ_OK, "%s: encode: %s", label, mq_last_error());
    if (roundtrip && st == MQ_OK) {
        char *back = mq_tokenizer_decode(t, ids, *n);
        size_t k = 0;
        while (back[k] && k < len && back[k] == text[k]) k++;
        CHECK(strlen(back) == len && k == len, "%s: decode(encode(text)) differs at byte %zu of %zu", label, k, len);
        free(back);
    }
    free(ids);
    return ms;
}

static void test_smollm2(const char *wiki, size_t wlen) {
    const char *home = getenv("HOME");
    char path[512];
    snprintf(path, sizeof path, "%s/.cache/matquant/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "");
    if (!mq_file_exists(path)) {
        SKIP("%s not found: SmolLM2 vocabulary pairs not checked", path);
        return;
    }
    mq_tokenizer *t = load_gguf_tok(path);
    cJSON *pairs = check_read_json(GOLD "/smollm2_pairs.json");
    CHECK(pairs != NULL, "smollm2_pairs.json unreadable");
    if (t && pairs) {
        CHECK(mq_tokenizer_vocab_size(t) == 49152, "SmolLM2 vocab %d", mq_tokenizer_vocab_size(t));
        check_pairs(t, "SmolLM2 GGUF", pairs, true);
        if (wiki) {
            size_t n = 0;
            double ms = encode_timed(t, wiki, wlen, &n, true, "SmolLM2 wikitext");
            printf("SmolLM2 (byte-level, 49152) wikitext-2 test: %zu tokens in %.0f ms\n", n, ms);
            CHECK(ms < MQ_ENCODE_HANG_MS, "SmolLM2 wikitext encode took %.0f ms", ms);
        }
        char out[256];
        snprintf(out, sizeof out, "/tmp/mq_test_tok_%d_smol.json", (int)getpid());
        mq_status st = mq_tokenizer_save_json(t, out);
        CHECK(st == MQ_OK, "save %s: %s", out, mq_last_error());
        mq_tokenizer *t2 = NULL;
        if (!st && !(st = mq_tokenizer_load_json(out, &t2))) check_pairs(t2, "SmolLM2 saved as json", pairs, false);
        CHECK(st == MQ_OK, "reload: %s", mq_last_error());
        mq_tokenizer_free(t2);
        remove(out);
    }
    mq_tokenizer_free(t);
    cJSON_Delete(pairs);
}

static void test_llama2c(const char *data, const char *wiki, size_t wlen) {
    mq_tokenizer *t = NULL;
    const char *p = check_path(data, "stories260K/tok512.bin");
    mq_status st = mq_tokenizer_load_llama2c(p, 512, &t);
    CHECK(st == MQ_OK, "%s: %s", p, mq_last_error());
    cJSON *g = check_read_json(check_path(data, "stories260K/golden.json"));
    CHECK(g != NULL, "stories260K golden.json unreadable");
    if (t && g) {
        CHECK(!strcmp(mq_tokenizer_kind(t), "llama2c"), "kind %s", mq_tokenizer_kind(t));
        CHECK(mq_tokenizer_bos(t) == 1 && mq_tokenizer_eos(t) == 2 && mq_tokenizer_add_bos(t), "bos/eos");
        check_pairs(t, "tok512.bin", cJSON_GetObjectItem(g, "encode"), false);
        /* written as a Llama-2-style tokenizer.json (merges from scores), it encodes the same */
        char out[256];
        snprintf(out, sizeof out, "/tmp/mq_test_tok_%d_tok512.json", (int)getpid());
        mq_status sst = mq_tokenizer_save_json(t, out);
        CHECK(sst == MQ_OK, "save %s: %s", out, mq_last_error());
        mq_tokenizer *t2 = NULL;
        if (!sst && !(sst = mq_tokenizer_load_json(out, &t2)))
            check_pairs(t2, "tok512.bin saved as json", cJSON_GetObjectItem(g, "encode"), false);
        CHECK(sst == MQ_OK, "reload %s: %s", out, mq_last_error());
        mq_tokenizer_free(t2);
        remove(out);
        /* decode: leading space dropped after BOS, <0x0A> is a newline */
        char buf[64];
        size_t k = mq_tokenizer_decode_token(t, 1, 403, buf, sizeof buf);
        CHECK(k > 0 && buf[0] != ' ', "after BOS the leading space is dropped");
        k = mq_tokenizer_decode_token(t, 403, 13, buf, sizeof buf);
        CHECK(k == 1 && buf[0] == '\n', "<0x0A> decodes to a newline");
    }
    cJSON_Delete(g);
    mq_tokenizer_free(t);

    t = NULL;
    p = check_path(data, "llama2-tokenizer/tokenizer.bin");
    st = mq_tokenizer_load_llama2c(p, 32000, &t);
    CHECK(st == MQ_OK, "%s: %s", p, mq_last_error());
    if (t && wiki) {
        size_t n = 0;
        double ms = encode_timed(t, wiki, wlen, &n, true, "Llama-2 wikitext");
        printf("Llama-2 tokenizer.bin wikitext-2 test: %zu tokens in %.0f ms (%.1f MB/s)\n", n, ms,
               wlen / 1e3 / (ms > 0 ? ms : 1));
        CHECK(n == 341468, "Llama-2 wikitext-2 test: %zu tokens, want 341468", n);
        CHECK(ms < MQ_ENCODE_HANG_MS, "Llama-2 wikitext encode took %.0f ms", ms);
    }
    mq_tokenizer_free(t);
}

static void test_bytelevel_speed(const char *wiki, size_t wlen) {
    mq_tokenizer *t = NULL;
    if (mq_tokenizer_load_json(GOLD "/llama3/tokenizer.json", &t)) return;
    size_t n = 0;
    double ms = encode_timed(t, wiki, wlen, &n, true, "llama3-style wikitext");
    printf("llama3-style json (byte-level, 2000) wikitext-2 test: %zu tokens in %.0f ms\n", n, ms);
    CHECK(ms < MQ_ENCODE_HANG_MS, "byte-level wikitext encode took %.0f ms", ms);
    mq_tokenizer_free(t);
    if (mq_tokenizer_load_json(GOLD "/spm/tokenizer.json", &t)) return;
    ms = encode_timed(t, wiki, wlen, &n, true, "spm-style wikitext");
    printf("spm-style json (byte fallback, 1756) wikitext-2 test: %zu tokens in %.0f ms\n", n, ms);
    CHECK(ms < MQ_ENCODE_HANG_MS, "spm wikitext encode took %.0f ms", ms);
    mq_tokenizer_free(t);
}

static void test_utf8_stream(void) {
    /* "a😀é中" with the 4-byte emoji and 3-byte CJK split across feeds */
    const char *s = "a\xf0\x9f\x98\x80\xc3\xa9\xe4\xb8\xad";
    const int cuts[] = {0, 2, 3, 5, 6, 8, 10};
    const size_t complete[] = {1, 1, 5, 5, 7, 10}; /* bytes out after each feed */
    mq_utf8_stream us = {0};
    char out[64];
    size_t k = 0;
    for (int i = 0; i + 1 < 7; i++) {
        k += mq_utf8_feed(&us, s + cuts[i], (size_t)(cuts[i + 1] - cuts[i]), out + k, sizeof out - k);
        if (i < 6) CHECK(k == complete[i], "after feed %d: %zu bytes out, want %zu", i, k, complete[i]);
    }
    k += mq_utf8_flush(&us, out + k, sizeof out - k);
    CHECK(k == strlen(s) && !memcmp(out, s, k), "split multi-byte characters reassemble (%zu bytes)", k);

    /* a ZWJ family emoji decoded token by token from byte-level pieces */
    mq_tokenizer *t = NULL;
    if (!mq_tokenizer_load_json(GOLD "/llama3/tokenizer.json", &t)) {
        const char *fam = "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7";
        int32_t *ids = NULL;
        size_t n = 0;
        mq_tokenizer_encode(t, fam, strlen(fam), false, &ids, &n);
        mq_utf8_stream st = {0};
        char acc[128], piece[64];
        size_t m = 0;
        bool partial_ok = true;
        for (size_t i = 0; i < n; i++) {
            size_t pk = mq_tokenizer_decode_token(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
            size_t w = mq_utf8_feed(&st, piece, pk, acc + m, sizeof acc - m);
            /* every chunk that comes out is valid UTF-8 on its own */
            for (size_t j = m; j < m + w; j++)
                if ((unsigned char)acc[j] == 0xEF && j + 2 < m + w && (unsigned char)acc[j + 1] == 0xBF &&
                    (unsigned char)acc[j + 2] == 0xBD)
                    partial_ok = false;
            m += w;
        }
        m += mq_utf8_flush(&st, acc + m, sizeof acc - m);
        CHECK(n > 1, "the family emoji takes several byte-level tokens (%zu)", n);
        CHECK(partial_ok && m == strlen(fam) && !memcmp(acc, fam, m), "streamed ZWJ emoji reassembles");
        free(ids);
        mq_tokenizer_free(t);
    }
    /* invalid bytes come out as U+FFFD */
    mq_utf8_stream bad = {0};
    k = mq_utf8_feed(&bad, "x\xff" "y\xe4", 4, out, sizeof out);
    k += mq_utf8_flush(&bad, out + k, sizeof out - k);
    CHECK(k == 8 && !memcmp(out, "x\xef\xbf\xbdy\xef\xbf\xbd", 8), "invalid bytes -> U+FFFD (%zu bytes)", k);
}

/* parse_special=false: special-token text is plain text; accessors */
static void test_api(void) {
    mq_tokenizer *t = NULL;
    if (mq_tokenizer_load_json(GOLD "/llama3/tokenizer.json", &t)) return;
    const char *s = "a<|im_start|>b";
    int32_t *ids = NULL;
    size_t n = 0;
    mq_tokenizer_encode(t, s, strlen(s), true, &ids, &n);
    int32_t im = n == 3 ? ids[1] : -1;
    CHECK(n == 3 && mq_tokenizer_is_special(t, im) && !strcmp(mq_tokenizer_piece(t, im), "<|im_start|>"),
          "parse_special: <|im_start|> is one special token (%zu ids)", n);
    free(ids);
    mq_tokenizer_encode(t, s, strlen(s), false, &ids, &n);
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= ids[i] == im;
    CHECK(n > 3 && !found, "without parse_special the text is split as plain text (%zu ids)", n);
    char *back = mq_tokenizer_decode(t, ids, n);
    CHECK(!strcmp(back, s), "plain-text special round trip: %s", back);
    free(back);
    free(ids);
    CHECK(mq_tokenizer_vocab_size(t) == 2000, "vocab %d", mq_tokenizer_vocab_size(t));
    CHECK(!strcmp(mq_tokenizer_kind(t), "bpe-bytelevel"), "kind %s", mq_tokenizer_kind(t));
    CHECK(mq_tokenizer_piece(t, -1) == NULL && mq_tokenizer_piece(t, 2000) == NULL, "piece out of range");
    CHECK(mq_tokenizer_add_bos(t) && !strcmp(mq_tokenizer_piece(t, mq_tokenizer_bos(t)), "<|begin_of_text|>") &&
              !strcmp(mq_tokenizer_piece(t, mq_tokenizer_eos(t)), "<|end_of_text|>"),
          "bos/eos from the template and tokenizer_config.json");
    mq_tokenizer_free(t);
    if (mq_tokenizer_load_json(GOLD "/gpt2/tokenizer.json", &t)) return;
    CHECK(!mq_tokenizer_add_bos(t), "gpt2-style: no BOS (tokenizer_config.json add_bos_token false)");
    mq_tokenizer_free(t);
    if (mq_tokenizer_load_json(GOLD "/spm/tokenizer.json", &t)) return;
    CHECK(!strcmp(mq_tokenizer_kind(t), "bpe-spm") && mq_tokenizer_bos(t) == 1 && mq_tokenizer_eos(t) == 2 &&
              mq_tokenizer_add_bos(t), "spm: kind %s bos %d eos %d", mq_tokenizer_kind(t), mq_tokenizer_bos(t),
          mq_tokenizer_eos(t));
    char buf[16];
    size_t k = mq_tokenizer_decode_token(t, 5, 3 + 0xE4, buf, sizeof buf);
    CHECK(k == 1 && (unsigned char)buf[0] == 0xE4, "<0xE4> decodes to the byte");
    mq_tokenizer_free(t);
}

static void expect_error(mq_status st, const char *file, const char *word) {
    const char *msg = mq_last_error();
    CHECK(st != MQ_OK && strstr(msg, file) && strstr(msg, word), "%s: status %d, message \"%s\" (want \"%s\")",
          file, (int)st, msg, word);
}

static void test_bad_files(void) {
    mq_tokenizer *t = NULL;
    expect_error(mq_tokenizer_load_json("tests/fixtures/tokenizer_invalid_json.json", &t),
                 "tokenizer_invalid_json.json", "JSON");
    expect_error(mq_tokenizer_load_json("tests/fixtures/tokenizer_no_model.json", &t), "tokenizer_no_model.json",
                 "model");
    expect_error(mq_tokenizer_load_json("tests/fixtures/tokenizer_unknown_type.json", &t),
                 "tokenizer_unknown_type.json", "Unigram");
    expect_error(mq_tokenizer_load_json("tests/fixtures/tokenizer_bad_merge.json", &t), "tokenizer_bad_merge.json",
                 "merge");
    expect_error(mq_tokenizer_load_json("tests/fixtures/tokenizer_does_not_exist.json", &t),
                 "tokenizer_does_not_exist.json", "");
    expect_error(mq_tokenizer_load_llama2c("tests/fixtures/tokenizer_truncated.bin", 512, &t),
                 "tokenizer_truncated.bin", "truncated");
    CHECK(t == NULL, "no tokenizer is returned on error");
}

int main(void) {
    const char *names[] = {"llama3", "gpt2", "qwen2", "spm", "metaspace"};
    for (int i = 0; i < 5; i++) test_json(names[i]);
    test_gguf("llama3.gguf", "llama3", "bpe-bytelevel");
    test_gguf("spm.gguf", "spm", "bpe-spm");
    test_utf8_stream();
    test_api();
    test_bad_files();

    const char *data = check_shared_data();
    char *wiki = NULL;
    size_t wlen = 0;
    if (data && mq_read_file(check_path(data, "wikitext2/wikitext-2-raw-v1.test.joined.txt"), &wiki, &wlen)) {
        SKIP("wikitext-2 test text unreadable: %s", mq_last_error());
        wiki = NULL;
    }
    if (data) test_llama2c(data, wiki, wlen);
    if (wiki) test_bytelevel_speed(wiki, wlen);
    test_smollm2(wiki, wlen);
    free(wiki);
    return check_done("test_tokenizer");
}
