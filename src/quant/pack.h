/*
 * pack.h — packed weight layouts for the integer kernels, built at load time
 * from a linear's int8 parent codes for one served width r in {8, 6, 4, 3, 2}
 * (with or without extra precision), per channel or per group of 32..256.
 *
 * A row of `cols` codes is padded with code 0 to kp = ceil(cols/64)*64 and cut
 * into chunks of 64 weights w[0..63]; each chunk is 8*r bytes made of planes
 * (docs/kernels.md draws them):
 *   P2 (16 B): byte i = w[i]&3 | (w[i+16]&3)<<2 | (w[i+32]&3)<<4 | (w[i+48]&3)<<6
 *   P4 (32 B): byte i = w[i]&15 | (w[i+32]&15)<<4
 *   P1 ( 8 B): bit i of the little-endian 64-bit word = w[i]&1
 *   r=8: the 64 codes as bytes; r=4: P4; r=2: P2;
 *   r=3: P2(w) then P1(w>>2); r=6: P4(w) then P2(w>>4).
 * Each plane expands to the 64 stored codes in order with one broadcast, one
 * variable shift and one mask (AVX-512).
 * Superblocks: the first nsuper = kp/512 runs of 512 columns (16 activation
 * blocks of 32) are stored interleaved: stored position
 *   pos = 512 s + 64 v + 4 l + m   holds column   512 s + 32 l + 4 v + m
 * (v = 0..7, l = 0..15, m = 0..3), so that in stored chunk v the bytes
 * 4l..4l+3 belong to block l: a vpdpbusd lane l then sees only block l, and
 * 8 of them accumulate the whole integer dot of each of 16 blocks in one
 * register. Columns past the superblocks (kp % 512) stay in natural order.
 * Activations are quantized into the same order (kern.h mq_kact.qs).
 * Grouped int2 (G2): at r = 2 the superblock chunks are stored 4 to a
 * 64-byte group instead (the same bytes: chunks 4q..4q+3 of a row take
 * bytes 64q..64q+63): byte i of the group = w_4q[i] | w_4q+1[i]<<2 |
 * w_4q+2[i]<<4 | w_4q+3[i]<<6, so that one whole 64-byte load and one mask
 * give a chunk's 64 codes in stored order (a 16-byte broadcast per chunk
 * cost the AVX-512 gemv half its rate, docs/results.md §14). Tail chunks
 * keep P2. G4 likewise at r = 4: 2 chunks to a 64-byte group, byte i =
 * w_2q[i] | w_2q+1[i]<<4 (tail chunks keep P4), and G3 at r = 3: 8 chunks
 * of 3-bit codes in 3 groups (mq_pack_g3_offset; tail chunks keep P2 +
 * P1).
 * Extra precision ("rx"): the plane holds min(q_r, 2^r-1) and the weights
 * whose unclamped slice is 2^r are listed per row (CSR, 16-bit columns:
 * extra precision needs cols <= 65536); each adds one more unit of its
 * activation.
 * The affine form per row and group: w = scale * q_r + bias with
 * scale = alpha * 2^(8-r), bias = -alpha * z (mq_ref_row_scale/row_bias).
 *
 * Not here: the kernels (quant/kern_*.c), choosing a width (quant/plan).
 * Widths 1, 5 and 7 have no packed layout (mq_pack_supported says so; the
 * model falls back to dequantized fp32 for them).
 */
#ifndef MQ_PACK_H
#define MQ_PACK_H

#include "core/core.h"

#define MQ_PACK_CHUNK 64  /* weights per chunk */
#define MQ_PACK_BLOCK 32  /* activation block (int8 scale per block) */
#define MQ_PACK_SUPER 512 /* columns per interleaved superblock (16 blocks) */
#define MQ_PACK_MAX_OVER_COLS 65536 /* columns at most with extra precision (16-bit overflow columns) */

/* The stored position of column j in a row of kp columns (kp a multiple of
 * 64); its own inverse is mq_pack_col_at. */
static inline int mq_pack_pos_of(int kp, int j) {
    if (j >= kp / MQ_PACK_SUPER * MQ_PACK_SUPER) return j;
    int b = j % MQ_PACK_SUPER;
    return j - b + (b % 32) / 4 * 64 + b / 32 * 4 + b % 4;
}
/* The column stored at position pos. */
static inline int mq_pack_col_at(int kp, int pos) {
    if (pos >= kp / MQ_PACK_SUPER * MQ_PACK_SUPER) return pos;
    int b = pos % MQ_PACK_SUPER;
    return pos - b + (b % 64) / 4 * 32 + b / 64 * 4 + b % 4;
}

/* Whether stored chunk c of a width-r row with nsuper superblocks is in a
 * G2 / G4 group: its codes are then (g[i] >> mq_pack_group_shift) & (2^r - 1)
 * for the 64 bytes g at mq_pack_group_offset in the row. */
static inline bool mq_pack_grouped(int r, int nsuper, int c) { return (r == 2 || r == 4) && c < 8 * nsuper; }
/* Chunks per group of a grouped width (G2: 4, G4: 2). */
static inline int mq_pack_group_chunks(int r) { return 8 / r; }
/* Byte offset in its row of grouped chunk c's group, and the shift of its field. */
static inline size_t mq_pack_group_offset(int r, int c) { return (size_t)(c / mq_pack_group_chunks(r)) * 64; }
static inline int mq_pack_group_shift(int r, int c) { return r * (c % mq_pack_group_chunks(r)); }

/* G3 (r = 3 superblocks): a superblock's 192 bytes are three 64-byte
 * groups; chunk v = c % 8 lies in group v / 3 at bits 3 (v % 3) up:
 *   group 0 byte i = w_0[i] | w_1[i] << 3 | (w_2[i] & 3) << 6
 *   group 1 byte i = w_3[i] | w_4[i] << 3 | (w_5[i] & 3) << 6
 *   group 2 byte i = w_6[i] | w_7[i] << 3 | (w_2[i] >> 2) << 6 | (w_5[i] >> 2) << 7
 * so that chunks 2 and 5 keep their low 2 bits in their group and bit 2 in
 * group 2 (bit mq_pack_g3_hi_bit). */
static inline bool mq_pack_g3(int r, int nsuper, int c) { return r == 3 && c < 8 * nsuper; }
static inline size_t mq_pack_g3_offset(int c) { return (size_t)(c / 8) * 192 + (size_t)(c % 8 / 3) * 64; }
static inline int mq_pack_g3_shift(int c) { return 3 * (c % 8 % 3); }
/* Whether chunk c's field is split (2 bits here, bit 2 in group 2), and
 * where bit 2 is: bit 6 (chunk 2) or 7 (chunk 5) of group 2's byte. */
static inline bool mq_pack_g3_split(int c) { return c % 8 % 3 == 2; }
static inline int mq_pack_g3_hi_bit(int c) { return c % 8 == 2 ? 6 : 7; }
static inline size_t mq_pack_g3_hi_offset(int c) { return (size_t)(c / 8) * 192 + 128; }

typedef struct mq_packed {
    int rows, cols;        /* logical shape (out, in) */
    int kp;                /* cols padded to a multiple of MQ_PACK_CHUNK */
    int nsuper;            /* kp / MQ_PACK_SUPER interleaved superblocks per row */
    int group;             /* columns per scale group (== cols per channel) */
    int ngroups;           /* cols / group */
    int bits;              /* 8, 6, 4, 3 or 2 */
    bool extra;            /* overflow list present */
    size_t row_bytes;      /* kp / 64 * 8 * bits */
    uint8_t *data;         /* (rows, row_bytes), 64-byte aligned */
    bool owns_data;        /* data is this matrix's own allocation (else part of the caller's arena) */
    float *scale;          /* (rows, ngroups) alpha * 2^(8-bits) */
    float *bias;           /* (rows, ngroups) -alpha * z */
    uint32_t *over_ptr;    /* (rows + 1) CSR offsets into over_col, or NULL */
    uint16_t *over_col;    /* (n_over) column of each overflow weight, increasing per row (cols <= 65536) */
    size_t n_over;
} mq_packed;

/* Does width r have a packed layout (r in {2, 3, 4, 6, 8}; extra allowed for
 * r < 8 and ignored at 8)? */
bool mq_pack_supported(int r, bool extra);

/* Can a (rows, cols) linear with groups of `group` columns be packed at
 * width r (mq_pack_supported, group divides cols and is cols or a multiple
 * of 32; with extra precision cols <= 65536, the overflow list's 16-bit
 * columns)? When not, the model serves that linear dequantized (fp32). */
bool mq_pack_layout_ok(int rows, int cols, int group, int r, bool extra);

/* Build the packed form of a (rows, cols) linear from parent codes q
 * (rows, cols), alpha (rows, cols/group) and zero (rows, cols/group) at width
 * r (extra precision if extra). group divides cols (group = cols: per
 * channel). *out owns its buffers (mq_pack_free). Errors (MQ_ERR_ARG, *out
 * zeroed): unsupported width, bad shape or group (a group other than cols
 * must be a multiple of 32), extra precision with more than 65536 columns
 * or more than 2^32 overflow weights. */
mq_status mq_pack_build(const uint8_t *q, const float *alpha, const uint8_t *zero, int rows, int cols, int group,
                        int r, bool extra, mq_packed *out);
/* Bytes of the code planes of a (rows, cols) linear at width r, rounded up
 * to 64: what mq_pack_build_at needs at `data`. */
size_t mq_pack_data_bytes(int rows, int cols, int r);
/* As mq_pack_build, but the code planes are written at data (64-byte
 * aligned, mq_pack_data_bytes long), which the caller owns: several
 * matrices in one buffer (qmodel.c: one huge-page arena for a model's
 * linears). data NULL: as mq_pack_build. */
mq_status mq_pack_build_at(const uint8_t *q, const float *alpha, const uint8_t *zero, int rows, int cols, int group,
                           int r, bool extra, uint8_t *data, mq_packed *out);
void mq_pack_free(mq_packed *p);

/* The 64 plane codes (clamped, without overflow) of columns 64c..64c+63 of
 * row `row` (natural order, whatever the storage order). */
void mq_pack_chunk_codes(const mq_packed *p, int row, int c, uint8_t out[MQ_PACK_CHUNK]);
/* The served codes of row `row` (cols): the plane plus one for each overflow
 * weight, i.e. mq_ref_slice(q, r, extra) of the parent codes. */
void mq_pack_unpack_row(const mq_packed *p, int row, int *codes);
/* Bytes the kernels read for one product with this matrix (planes, scales,
 * biases and the overflow list). */
size_t mq_pack_bytes(const mq_packed *p);

#endif
