/*
 * gguf_dequant.c — ggml tensor types to fp32, one block at a time.
 *
 * Block layouts (little-endian; "f16" is an IEEE half; q is the stored code
 * of element e of the block; written from the format, ggml's block_* structs):
 *
 *   type  elems bytes  layout                                    value
 *   Q4_0   32    18    f16 d | u8 qs[16]                         (q - 8) d
 *   Q4_1   32    20    f16 d | f16 m | u8 qs[16]                 q d + m
 *   Q5_0   32    22    f16 d | u32 qh | u8 qs[16]                (q - 16) d
 *   Q5_1   32    24    f16 d | f16 m | u32 qh | u8 qs[16]        q d + m
 *   Q8_0   32    34    f16 d | i8 qs[32]                         q d
 *     4-bit codes: element e < 16 is the low nibble of qs[e], e >= 16 the
 *     high nibble of qs[e - 16]; Q5's fifth bit of element e is bit e of qh.
 *
 *   K-quants: 256-element super-blocks of 16 (Q2/Q3/Q6) or 32 (Q4/Q5)
 *   element sub-blocks, each with its own small integer scale (and min).
 *   Q2_K   84    u8 sc[16] | u8 qs[64] | f16 d | f16 dmin
 *                sc[j] = scale (low nibble) | min (high nibble)   d sc q - dmin min
 *   Q3_K  110    u8 hmask[32] | u8 qs[64] | u8 sc[12] | f16 d     d (s - 32) (q - 4 [high bit clear])
 *                6-bit s_j: low 4 bits in nibble (j / 8) of sc[j % 8],
 *                high 2 bits in bits 2 (j / 4) of sc[8 + j % 4]
 *   Q4_K  144    f16 d | f16 dmin | u8 sc[12] | u8 qs[128]        d s q - dmin m
 *   Q5_K  176    f16 d | f16 dmin | u8 sc[12] | u8 qh[32] | u8 qs[128]
 *                6-bit (s, m) of sub-block j < 4: low 6 bits of sc[j], sc[j + 4];
 *                j >= 4: low/high nibble of sc[j + 4] | top 2 bits of sc[j - 4], sc[j] as bits 4-5
 *   Q6_K  210    u8 ql[128] | u8 qh[64] | i8 sc[16] | f16 d        d sc (q - 32)
 *
 *   The 2-bit planes (Q2_K, Q3_K, Q6_K's high bits): element e = 128 h + 32 g + l
 *   (h half, g plane, l lane) is bits 2g..2g+1 of byte 32 h + l. Q4_K/Q5_K:
 *   element e = 64 c + 32 k + l is nibble k of qs[32 c + l]; Q5_K's fifth bit
 *   is bit e / 32 of qh[e % 32]. Q6_K's low nibble: nibble g / 2 of
 *   ql[64 h + 32 (g % 2) + l]. Sub-block of element e: e / 16 or e / 32.
 *
 * Checked against gguf-py's numpy dequantization (tests/test_gguf.c,
 * goldens from scripts/make_io_fixtures.py).
 * Not here: quantizing to these types (we only read them).
 */
#include "io/gguf_internal.h"

#include <string.h>

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return mq_f16_to_f32(h);
}

/* ------------------------------------------------- 32-element blocks */

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int e = 0; e < 16; e++) {
        y[e] = (float)((int)(qs[e] & 15) - 8) * d;
        y[e + 16] = (float)((int)(qs[e] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int e = 0; e < 16; e++) {
        y[e] = (float)(qs[e] & 15) * d + m;
        y[e + 16] = (float)(qs[e] >> 4) * d + m;
    }
}

/* the 5-bit code of element e (0..31) from its nibble plane and qh */
static inline int q5_code(const uint8_t *qs, uint32_t qh, int e) {
    int nib = e < 16 ? qs[e] & 15 : qs[e - 16] >> 4;
    return nib | (int)((qh >> e) & 1) << 4;
}

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = f16_at(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    for (int e = 0; e < 32; e++) y[e] = (float)(q5_code(b + 6, qh, e) - 16) * d;
}

static void dq_q5_1(const uint8_t *b, float *y) {
    float d = f16_at(b), m = f16_at(b + 2);
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    for (int e = 0; e < 32; e++) y[e] = (float)q5_code(b + 8, qh, e) * d + m;
}

static void dq_q8_0(const uint8_t *b, float *y) {
    float d = f16_at(b);
    for (int e = 0; e < 32; e++) y[e] = (float)(int8_t)b[2 + e] * d;
}

/* ------------------------------------------------- 256-element K-quants */

static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * g + l;
                int q = (qs[32 * h + l] >> (2 * g)) & 3;
                uint8_t s = sc[e / 16];
                y[e] = d * (float)(s & 15) * (float)q - dmin * (float)(s >> 4);
            }
}

/* the signed 6-bit scale of sub-block j (0..15) of a Q3_K block */
static inline int q3k_scale(const uint8_t *sc, int j) {
    int low = j < 8 ? sc[j] & 15 : sc[j - 8] >> 4;
    int high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (low | high << 4) - 32;
}

static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    float d = f16_at(b + 108);
    float ds[16];
    for (int j = 0; j < 16; j++) ds[j] = d * (float)q3k_scale(sc, j);
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * g + l;
                int q = (qs[32 * h + l] >> (2 * g)) & 3;
                if (!((hmask[l] >> (4 * h + g)) & 1)) q -= 4; /* high bit clear: q - 4 */
                y[e] = ds[e / 16] * (float)q;
            }
}

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block */
static inline void k4_scale_min(const uint8_t *sc, int j, int *s, int *m) {
    if (j < 4) {
        *s = sc[j] & 63;
        *m = sc[j + 4] & 63;
    } else {
        *s = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
        *m = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
    }
}

/* Q4_K (qh == NULL) and Q5_K */
static void dq_k45(const uint8_t *sc, const uint8_t *qh, const uint8_t *qs, float d, float dmin, float *y) {
    for (int j = 0; j < 8; j++) {
        int s, m;
        k4_scale_min(sc, j, &s, &m);
        float dl = d * (float)s, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 15;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = dl * (float)v - ml;
        }
    }
}

static void dq_q4_k(const uint8_t *b, float *y) { dq_k45(b + 4, NULL, b + 16, f16_at(b), f16_at(b + 2), y); }
static void dq_q5_k(const uint8_t *b, float *y) { dq_k45(b + 4, b + 16, b + 48, f16_at(b), f16_at(b + 2), y); }

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16_at(b + 208);
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * g + l;
                int low = (ql[64 * h + 32 * (g % 2) + l] >> (4 * (g / 2))) & 15;
                int high = (qh[32 * h + l] >> (2 * g)) & 3;
                y[e] = d * (float)sc[e / 16] * (float)((low | high << 4) - 32);
            }
}

/* ------------------------------------------------------------ driver */

typedef void (*dq_block_fn)(const uint8_t *block, float *y);

static dq_block_fn block_fn(uint32_t type) {
    switch (type) {
    case MQ_GGML_Q4_0: return dq_q4_0;
    case MQ_GGML_Q4_1: return dq_q4_1;
    case MQ_GGML_Q5_0: return dq_q5_0;
    case MQ_GGML_Q5_1: return dq_q5_1;
    case MQ_GGML_Q8_0: return dq_q8_0;
    case MQ_GGML_Q2_K: return dq_q2_k;
    case MQ_GGML_Q3_K: return dq_q3_k;
    case MQ_GGML_Q4_K: return dq_q4_k;
    case MQ_GGML_Q5_K: return dq_q5_k;
    case MQ_GGML_Q6_K: return dq_q6_k;
    default: return NULL;
    }
}

mq_status mq_gguf_dequant_rows(const mq_gguf_tensor *t, int64_t row0, int64_t nrows, float *out) {
    size_t bb;
    int be;
    mq_ggml_block(t->type, &bb, &be);
    int64_t cols = t->ne[0];
    int64_t total_rows = cols ? mq_gguf_tensor_numel(t) / cols : 0;
    if (row0 < 0 || nrows < 0 || row0 > total_rows || nrows > total_rows - row0)
        return mq_fail(MQ_ERR_ARG, "tensor '%s': rows [%lld, %lld) out of range (%lld rows)", t->name,
                       (long long)row0, (long long)row0 + (long long)nrows, (long long)total_rows);
    if (!bb || cols % be)
        return mq_fail(MQ_ERR_UNSUPPORTED, "tensor '%s': ggml type %s (%u) cannot be dequantized", t->name,
                       mq_ggml_type_name(t->type), t->type);
    /* sizes were validated against the file by mq_gguf_open: no overflow */
    size_t row_bytes = (size_t)(cols / be) * bb;
    const uint8_t *src = (const uint8_t *)t->data + (size_t)row0 * row_bytes;
    size_t n = (size_t)cols * (size_t)nrows;
    switch (t->type) {
    case MQ_GGML_F32: if (n) memcpy(out, src, n * 4); return MQ_OK;
    case MQ_GGML_F16: return mq_convert_to_f32(src, MQ_DTYPE_F16, n, out);
    case MQ_GGML_BF16: return mq_convert_to_f32(src, MQ_DTYPE_BF16, n, out);
    case MQ_GGML_F64: return mq_convert_to_f32(src, MQ_DTYPE_F64, n, out);
    default: break;
    }
    dq_block_fn fn = block_fn(t->type);
    if (!fn)
        return mq_fail(MQ_ERR_UNSUPPORTED, "tensor '%s': ggml type %s (%u) cannot be dequantized", t->name,
                       mq_ggml_type_name(t->type), t->type);
    size_t nblocks = n / (size_t)be;
#pragma omp parallel for if (nblocks > 4096)
    for (size_t i = 0; i < nblocks; i++) fn(src + i * bb, out + i * (size_t)be);
    return MQ_OK;
}

mq_status mq_gguf_dequant(const mq_gguf_tensor *t, float *out) {
    int64_t cols = t->ne[0];
    return mq_gguf_dequant_rows(t, 0, cols ? mq_gguf_tensor_numel(t) / cols : 0, out);
}
