/*
 * kern_scalar.c — the reference integer kernels: every SIMD variant must
 * produce the same integer dot products I_k (kern.h) and the same outputs up
 * to fp32 rounding order. Decodes each chunk with mq_pack_chunk_codes (the
 * layout's specification), so it also checks the packing.
 *
 * Not here: speed (see kern_avx2.c, kern_avx512.c).
 * Memory layout and overflow proof: pack.h, docs/kernels.md. Integer ranges:
 * codes 0..255, xq -127..127, one block sums 32 products: |I_k| <= 32*255*127
 * + 32*127 (overflow weights) < 2^21, far inside int32.
 */
#include "quant/kern.h"

/* I_k for row o of p and token t into out (kp/32). */
static void row_dots(const mq_packed *p, int o, const mq_kact *a, int t, int32_t *out) {
    const int8_t *x = a->q + (size_t)t * a->kp;
    uint8_t w[MQ_PACK_CHUNK];
    for (int c = 0; c < p->kp / MQ_PACK_CHUNK; c++) {
        mq_pack_chunk_codes(p, o, c, w);
        for (int h = 0; h < 2; h++) {
            int32_t s = 0;
            for (int i = 0; i < MQ_PACK_BLOCK; i++) {
                int j = h * MQ_PACK_BLOCK + i;
                s += (int32_t)w[j] * x[c * MQ_PACK_CHUNK + j];
            }
            out[2 * c + h] = s;
        }
    }
    if (p->extra) mq_kern_over_dots(p, o, x, out);
}

static void dots_scalar(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out) {
    int nb = p->kp / MQ_PACK_BLOCK;
    for (int o = o0; o < o1; o++) row_dots(p, o, a, t, out + (size_t)(o - o0) * nb);
}

/* The reference float order: y = sum_k (s_g * d_k) * I_k, k increasing,
 * then + sum_g b_g * G_g, g increasing. */
static float row_out(const mq_packed *p, int o, const mq_kact *a, int t, int32_t *I) {
    int nb = p->kp / MQ_PACK_BLOCK;
    const float *d = a->d + (size_t)t * (a->kp / MQ_PACK_BLOCK);
    const float *G = a->gsum + (size_t)t * (a->kp / MQ_PACK_BLOCK);
    const float *s = p->scale + (size_t)o * p->ngroups, *b = p->bias + (size_t)o * p->ngroups;
    row_dots(p, o, a, t, I);
    float y = 0.0f;
    for (int k = 0; k < nb; k++) y += s[mq_kern_group_of(p, k)] * d[k] * (float)I[k];
    for (int g = 0; g < p->ngroups; g++) y += b[g] * G[g];
    return y;
}

static void gemv_scalar(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y) {
    int32_t I[8192 / MQ_PACK_BLOCK];
    int32_t *buf = p->kp <= 8192 ? I : mq_malloc((size_t)p->kp / MQ_PACK_BLOCK * sizeof(int32_t));
    for (int o = o0; o < o1; o++) y[o] = row_out(p, o, a, 0, buf);
    if (buf != I) free(buf);
}

static void gemm_scalar(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy) {
    int32_t I[8192 / MQ_PACK_BLOCK];
    int32_t *buf = p->kp <= 8192 ? I : mq_malloc((size_t)p->kp / MQ_PACK_BLOCK * sizeof(int32_t));
    for (int o = o0; o < o1; o++)
        for (int t = 0; t < a->B; t++) y[(size_t)t * ldy + o] = row_out(p, o, a, t, buf);
    if (buf != I) free(buf);
}

const mq_kern_ops mq_kern_scalar_ops = {"scalar", dots_scalar, gemv_scalar, gemm_scalar};
