/*
 * pack.c — building the packed layouts of pack.h from parent codes, and the
 * scalar decoding of a chunk (the specification the SIMD unpacks follow).
 *
 * Not here: any arithmetic with activations (quant/kern_*.c).
 * References: docs/kernels.md (the layouts drawn), docs/format.md §2
 * (slicing), src/quant/ref.h (mq_ref_slice, mq_ref_row_scale/row_bias).
 */
#include "quant/pack.h"

#include "quant/ref.h"

#include <string.h>

bool mq_pack_supported(int r, bool extra) {
    (void)extra;
    return r == 2 || r == 3 || r == 4 || r == 6 || r == 8;
}

/* ------------------------------------------------------------- planes */

static void put_p2(const uint8_t *w, uint8_t *dst) {
    for (int i = 0; i < 16; i++)
        dst[i] = (uint8_t)((w[i] & 3) | (w[i + 16] & 3) << 2 | (w[i + 32] & 3) << 4 | (w[i + 48] & 3) << 6);
}
static void put_p4(const uint8_t *w, uint8_t *dst) {
    for (int i = 0; i < 32; i++) dst[i] = (uint8_t)((w[i] & 15) | (w[i + 32] & 15) << 4);
}
static void put_p1(const uint8_t *w, uint8_t *dst) {
    uint64_t m = 0;
    for (int i = 0; i < 64; i++) m |= (uint64_t)(w[i] & 1) << i;
    for (int i = 0; i < 8; i++) dst[i] = (uint8_t)(m >> (8 * i));
}
static void get_p2(const uint8_t *src, uint8_t *w, int shift) {
    for (int i = 0; i < 64; i++) w[i] |= (uint8_t)(((src[i & 15] >> (2 * (i >> 4))) & 3) << shift);
}
static void get_p4(const uint8_t *src, uint8_t *w, int shift) {
    for (int i = 0; i < 64; i++) w[i] |= (uint8_t)(((src[i & 31] >> (4 * (i >> 5))) & 15) << shift);
}
static void get_p1(const uint8_t *src, uint8_t *w, int shift) {
    for (int i = 0; i < 64; i++) w[i] |= (uint8_t)(((src[i >> 3] >> (i & 7)) & 1) << shift);
}

/* Encode 64 codes (each < 2^r) as the chunk layout of width r. */
static void put_chunk(const uint8_t *w, int r, uint8_t *dst) {
    uint8_t hi[MQ_PACK_CHUNK];
    switch (r) {
    case 8: memcpy(dst, w, MQ_PACK_CHUNK); break;
    case 4: put_p4(w, dst); break;
    case 2: put_p2(w, dst); break;
    case 3:
        put_p2(w, dst);
        for (int i = 0; i < 64; i++) hi[i] = (uint8_t)(w[i] >> 2);
        put_p1(hi, dst + 16);
        break;
    case 6:
        put_p4(w, dst);
        for (int i = 0; i < 64; i++) hi[i] = (uint8_t)(w[i] >> 4);
        put_p2(hi, dst + 32);
        break;
    default: MQ_ASSERT(!"unsupported width");
    }
}

/* The 64 codes of stored chunk c (positions 64c..64c+63) of a row. */
static void stored_chunk(const mq_packed *p, int row, int c, uint8_t out[MQ_PACK_CHUNK]) {
    const uint8_t *src = p->data + (size_t)row * p->row_bytes + (size_t)c * 8 * p->bits;
    if (mq_pack_grouped(p->bits, p->nsuper, c)) { /* pack.h: one field of its group's 64 bytes */
        int r = p->bits, sh = mq_pack_group_shift(r, c);
        const uint8_t *g = p->data + (size_t)row * p->row_bytes + mq_pack_group_offset(r, c);
        for (int i = 0; i < MQ_PACK_CHUNK; i++) out[i] = (uint8_t)((g[i] >> sh) & ((1 << r) - 1));
        return;
    }
    if (mq_pack_g3(p->bits, p->nsuper, c)) { /* pack.h: a 3-bit field, or 2 bits and bit 2 apart */
        const uint8_t *rw = p->data + (size_t)row * p->row_bytes, *g = rw + mq_pack_g3_offset(c);
        const uint8_t *h = rw + mq_pack_g3_hi_offset(c);
        int sh = mq_pack_g3_shift(c), hb = mq_pack_g3_hi_bit(c);
        bool split = mq_pack_g3_split(c);
        for (int i = 0; i < MQ_PACK_CHUNK; i++)
            out[i] = (uint8_t)(split ? (g[i] >> sh & 3) | (h[i] >> hb & 1) << 2 : g[i] >> sh & 7);
        return;
    }
    memset(out, 0, MQ_PACK_CHUNK);
    switch (p->bits) {
    case 8: memcpy(out, src, MQ_PACK_CHUNK); break;
    case 4: get_p4(src, out, 0); break;
    case 2: get_p2(src, out, 0); break;
    case 3: get_p2(src, out, 0); get_p1(src + 16, out, 2); break;
    case 6: get_p4(src, out, 0); get_p2(src + 32, out, 4); break;
    default: MQ_ASSERT(!"unsupported width");
    }
}

void mq_pack_chunk_codes(const mq_packed *p, int row, int c, uint8_t out[MQ_PACK_CHUNK]) {
    if (c >= p->nsuper * (MQ_PACK_SUPER / MQ_PACK_CHUNK)) { /* natural order */
        stored_chunk(p, row, c, out);
        return;
    }
    /* columns 64c.. of a superblock are spread over its 8 stored chunks */
    uint8_t w[MQ_PACK_CHUNK];
    int c0 = c / 8 * 8;
    for (int v = 0; v < 8; v++) {
        stored_chunk(p, row, c0 + v, w);
        for (int i = 0; i < MQ_PACK_CHUNK; i++) {
            int j = mq_pack_col_at(p->kp, (c0 + v) * MQ_PACK_CHUNK + i);
            if (j / MQ_PACK_CHUNK == c) out[j % MQ_PACK_CHUNK] = w[i];
        }
    }
}

/* -------------------------------------------------------------- build */

void mq_pack_free(mq_packed *p) {
    if (!p) return;
    if (p->owns_data) free(p->data);
    free(p->scale);
    free(p->bias);
    free(p->over_ptr);
    free(p->over_col);
    memset(p, 0, sizeof *p);
}

bool mq_pack_layout_ok(int rows, int cols, int group, int r, bool extra) {
    return mq_pack_supported(r, extra) && rows > 0 && cols > 0 && group > 0 && cols % group == 0 &&
           (group == cols || group % MQ_PACK_BLOCK == 0) && (!extra || r == 8 || cols <= MQ_PACK_MAX_OVER_COLS);
}

size_t mq_pack_data_bytes(int rows, int cols, int r) {
    size_t kp = ((size_t)cols + MQ_PACK_CHUNK - 1) / MQ_PACK_CHUNK * MQ_PACK_CHUNK;
    size_t n = (size_t)rows * (kp / MQ_PACK_CHUNK) * 8 * (size_t)r;
    return (n + 63) / 64 * 64; /* so the next matrix of an arena starts 64-byte aligned */
}

mq_status mq_pack_build(const uint8_t *q, const float *alpha, const uint8_t *zero, int rows, int cols, int group,
                        int r, bool extra, mq_packed *out) {
    return mq_pack_build_at(q, alpha, zero, rows, cols, group, r, extra, NULL, out);
}

mq_status mq_pack_build_at(const uint8_t *q, const float *alpha, const uint8_t *zero, int rows, int cols, int group,
                           int r, bool extra, uint8_t *data, mq_packed *out) {
    memset(out, 0, sizeof *out);
    if (!mq_pack_supported(r, extra)) return mq_fail(MQ_ERR_ARG, "pack: no packed layout for width %d", r);
    if (rows <= 0 || cols <= 0 || group <= 0 || cols % group != 0)
        return mq_fail(MQ_ERR_ARG, "pack: bad shape (%d, %d) with group %d", rows, cols, group);
    if (group != cols && group % MQ_PACK_BLOCK != 0) /* a block of activations has one weight group */
        return mq_fail(MQ_ERR_ARG, "pack: group %d is not a multiple of %d", group, MQ_PACK_BLOCK);
    if (r == 8) extra = false;
    if (extra && cols > MQ_PACK_MAX_OVER_COLS)
        return mq_fail(MQ_ERR_ARG, "pack: extra precision needs at most %d columns (16-bit overflow columns), not %d",
                       MQ_PACK_MAX_OVER_COLS, cols);
    mq_packed *p = out;
    p->rows = rows;
    p->cols = cols;
    p->kp = (cols + MQ_PACK_CHUNK - 1) / MQ_PACK_CHUNK * MQ_PACK_CHUNK;
    p->nsuper = p->kp / MQ_PACK_SUPER;
    p->group = group;
    p->ngroups = cols / group;
    p->bits = r;
    p->extra = extra;
    p->row_bytes = (size_t)(p->kp / MQ_PACK_CHUNK) * 8 * (size_t)r;
    size_t ng = (size_t)rows * (size_t)p->ngroups;
    MQ_ASSERT(((uintptr_t)data & 63) == 0);
    p->owns_data = data == NULL;
    p->data = data ? data : mq_stream_alloc((size_t)rows * p->row_bytes);
    p->scale = mq_malloc(ng * sizeof(float));
    p->bias = mq_malloc(ng * sizeof(float));
    for (size_t i = 0; i < ng; i++) {
        p->scale[i] = mq_ref_row_scale(alpha[i], r);
        p->bias[i] = mq_ref_row_bias(alpha[i], zero[i]);
    }
    /* overflow list: count first, then fill (rows in parallel below) */
    if (extra) {
        p->over_ptr = mq_malloc(((size_t)rows + 1) * sizeof(uint32_t));
        size_t tot = 0;
        p->over_ptr[0] = 0;
        for (int o = 0; o < rows; o++) {
            tot += (size_t)mq_ref_count_overflow(q + (size_t)o * cols, (size_t)cols, r);
            if (tot > UINT32_MAX) {
                mq_pack_free(p);
                return mq_fail(MQ_ERR_ARG, "pack: more than 2^32 overflow weights");
            }
            p->over_ptr[o + 1] = (uint32_t)tot;
        }
        p->n_over = tot;
        p->over_col = mq_malloc((tot ? tot : 1) * sizeof(uint16_t));
    }
    int nchunks = p->kp / MQ_PACK_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > 65536)
    for (int o = 0; o < rows; o++) {
        const uint8_t *qr = q + (size_t)o * cols;
        uint8_t w[MQ_PACK_CHUNK];
        uint32_t n = extra ? p->over_ptr[o] : 0;
        int cap = (1 << r) - 1;
        for (int j = 0; j < cols; j++) { /* columns in order: over_col increases */
            int v = mq_ref_slice(qr[j], r, extra);
            if (v > cap) { /* only with extra: the slice is exactly 2^r */
                p->over_col[n++] = (uint16_t)j;
                MQ_ASSERT(n <= p->over_ptr[o + 1]);
            }
        }
        uint8_t *row = p->data + (size_t)o * p->row_bytes;
        for (int c = 0; c < nchunks; c++) {
            for (int i = 0; i < MQ_PACK_CHUNK; i++) {
                int j = mq_pack_col_at(p->kp, c * MQ_PACK_CHUNK + i);
                int v = j < cols ? mq_ref_slice(qr[j], r, extra) : 0;
                w[i] = (uint8_t)(v > cap ? cap : v);
            }
            if (mq_pack_grouped(r, p->nsuper, c)) { /* byte i of the group: code i of each of its chunks */
                uint8_t *g = row + mq_pack_group_offset(r, c);
                int sh = mq_pack_group_shift(r, c);
                if (sh == 0) memset(g, 0, 64); /* the group's first chunk */
                for (int i = 0; i < MQ_PACK_CHUNK; i++) g[i] |= (uint8_t)(w[i] << sh);
            } else if (mq_pack_g3(r, p->nsuper, c)) { /* pack.h: field c % 8 % 3 of group c % 8 / 3 */
                uint8_t *g = row + mq_pack_g3_offset(c), *h = row + mq_pack_g3_hi_offset(c);
                int sh = mq_pack_g3_shift(c), hb = mq_pack_g3_hi_bit(c);
                bool split = mq_pack_g3_split(c);
                if (c % 8 == 0) memset(g, 0, 192); /* the superblock's first chunk: its 3 groups */
                for (int i = 0; i < MQ_PACK_CHUNK; i++) {
                    g[i] |= (uint8_t)((split ? w[i] & 3 : w[i]) << sh);
                    if (split) h[i] |= (uint8_t)((w[i] >> 2) << hb);
                }
            } else {
                put_chunk(w, r, row + (size_t)c * 8 * r);
            }
        }
        MQ_ASSERT(!extra || n == p->over_ptr[o + 1]);
    }
    return MQ_OK;
}

void mq_pack_unpack_row(const mq_packed *p, int row, int *codes) {
    uint8_t w[MQ_PACK_CHUNK];
    for (int c = 0; c < p->kp / MQ_PACK_CHUNK; c++) {
        mq_pack_chunk_codes(p, row, c, w);
        for (int i = 0; i < MQ_PACK_CHUNK; i++)
            if (c * MQ_PACK_CHUNK + i < p->cols) codes[c * MQ_PACK_CHUNK + i] = w[i];
    }
    if (p->extra)
        for (uint32_t k = p->over_ptr[row]; k < p->over_ptr[row + 1]; k++) codes[p->over_col[k]]++;
}

size_t mq_pack_bytes(const mq_packed *p) {
    size_t b = (size_t)p->rows * p->row_bytes + 2 * sizeof(float) * (size_t)p->rows * (size_t)p->ngroups;
    if (p->extra) b += ((size_t)p->rows + 1) * sizeof(uint32_t) + p->n_over * sizeof(uint16_t);
    return b;
}
