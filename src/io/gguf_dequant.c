/*
 * gguf_dequant.c — ggml tensor types to fp32. Block layouts (from the ggml
 * format; 32-element blocks for Q4_0..Q8_0, 256-element super-blocks for the
 * K-quants):
 *   Q4_0  f16 d, u8 qs[16]:            x = (nibble - 8) * d
 *   Q4_1  f16 d, f16 m, u8 qs[16]:     x = nibble * d + m
 *   Q5_0  f16 d, u8 qh[4], u8 qs[16]:  x = ((nibble | hbit << 4) - 16) * d
 *   Q5_1  f16 d, f16 m, qh[4], qs[16]: x = (nibble | hbit << 4) * d + m
 *   Q8_0  f16 d, i8 qs[32]:            x = q * d
 * (low nibbles are elements 0..15, high nibbles 16..31), and Q2_K..Q6_K with
 * their packed 4/6-bit sub-block scales.
 * Checked against gguf-py's numpy dequantization (tests/test_gguf.c).
 */
#include "io/gguf.h"

#include <string.h>

void mq_ggml_block(uint32_t type, size_t *bytes, int *elems);

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return mq_f16_to_f32(h);
}

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = h2f(b), m = h2f(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xF) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

static void dq_q5(const uint8_t *b, float *y, bool has_min) {
    float d = h2f(b), m = has_min ? h2f(b + 2) : 0;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh;
    memcpy(&qh, p, 4);
    const uint8_t *qs = p + 4;
    for (int j = 0; j < 16; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        int x0 = (qs[j] & 0xF) | h0, x1 = (qs[j] >> 4) | h1;
        if (has_min) {
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        } else {
            y[j] = (float)(x0 - 16) * d;
            y[j + 16] = (float)(x1 - 16) * d;
        }
    }
}

static void dq_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t sc = scales[is++];
            float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
            sc = scales[is++];
            dl = d * (sc & 0xF);
            ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16] >> shift) & 3) - ml;
            shift += 2;
        }
        q += 32;
    }
}

static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *sc12 = b + 96;
    float d_all = h2f(b + 108);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    memcpy(aux, sc12, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    memcpy(scales, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            float dl = d_all * (float)(scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (float)(scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m <<= 1;
        }
        q += 32;
    }
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
    }
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * (float)q1;
            y[l + 32] = d * sc[is + 2] * (float)q2;
            y[l + 64] = d * sc[is + 4] * (float)q3;
            y[l + 96] = d * sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

mq_status mq_gguf_dequant_rows(const mq_gguf_tensor *t, int64_t row0, int64_t nrows, float *out) {
    size_t bb;
    int be;
    mq_ggml_block(t->type, &bb, &be);
    int64_t cols = t->ne[0], total_rows = mq_gguf_tensor_numel(t) / (cols ? cols : 1);
    if (row0 < 0 || nrows < 0 || row0 + nrows > total_rows)
        return mq_fail(MQ_ERR_ARG, "tensor '%s': rows %lld..%lld out of range (%lld rows)", t->name,
                       (long long)row0, (long long)(row0 + nrows), (long long)total_rows);
    size_t row_bytes = (size_t)(cols / be) * bb;
    const uint8_t *src = (const uint8_t *)t->data + (size_t)row0 * row_bytes;
    size_t nblocks = (size_t)(cols / be) * (size_t)nrows, n = (size_t)cols * (size_t)nrows;
    switch (t->type) {
    case MQ_GGML_F32: memcpy(out, src, n * 4); return MQ_OK;
    case MQ_GGML_F16: return mq_convert_to_f32(src, MQ_DTYPE_F16, n, out);
    case MQ_GGML_BF16: return mq_convert_to_f32(src, MQ_DTYPE_BF16, n, out);
    case MQ_GGML_F64: return mq_convert_to_f32(src, MQ_DTYPE_F64, n, out);
    default: break;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (t->type) {
    case MQ_GGML_Q4_0: fn = dq_q4_0; break;
    case MQ_GGML_Q4_1: fn = dq_q4_1; break;
    case MQ_GGML_Q8_0: fn = dq_q8_0; break;
    case MQ_GGML_Q2_K: fn = dq_q2_k; break;
    case MQ_GGML_Q3_K: fn = dq_q3_k; break;
    case MQ_GGML_Q4_K: fn = dq_q4_k; break;
    case MQ_GGML_Q5_K: fn = dq_q5_k; break;
    case MQ_GGML_Q6_K: fn = dq_q6_k; break;
    case MQ_GGML_Q5_0: case MQ_GGML_Q5_1: {
        bool has_min = t->type == MQ_GGML_Q5_1;
        for (size_t i = 0; i < nblocks; i++) dq_q5(src + i * bb, out + i * 32, has_min);
        return MQ_OK;
    }
    default:
        return mq_fail(MQ_ERR_UNSUPPORTED, "tensor '%s': ggml type %s (%u) cannot be dequantized", t->name,
                       mq_ggml_type_name(t->type), t->type);
    }
#pragma omp parallel for if (nblocks > 4096)
    for (size_t i = 0; i < nblocks; i++) fn(src + i * bb, out + i * (size_t)be);
    return MQ_OK;
}

mq_status mq_gguf_dequant(const mq_gguf_tensor *t, float *out) {
    int64_t cols = t->ne[0];
    return mq_gguf_dequant_rows(t, 0, cols ? mq_gguf_tensor_numel(t) / cols : 0, out);
}
