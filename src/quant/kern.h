/*
 * kern.h — integer kernels for packed low-bit linears (pack.h): int8
 * activations, the trait table every ISA variant fills, runtime dispatch and
 * the threaded product the forward pass calls.
 *
 * Activations: each token's input row x (cols) is cut into blocks of 32
 * (the last one padded with zeros to kp) and quantized symmetrically,
 *   d_k = max|x| / 127 over block k,  xq_j = clamp(round(x_j / d_k), -127, 127)
 * (d_k = 0 and xq = 0 for an all-zero block). With w = s_g * q_j + b_g for the
 * weights of group g, one output is, writing xhat_j = d_k * xq_j,
 *   y = sum_k s_g(k) * d_k * I_k  +  sum_g b_g * G_g
 *   I_k = sum_{j in block k} q_j * xq_j      (integers; overflow weights add xq_j)
 *   G_g = sum_{k in g} d_k * sum_{j in k} xq_j
 * i.e. y is exactly sum_j w_j * xhat_j up to fp32 rounding. The integer
 * dot products I_k are bit-exact across variants (tests/test_kern.c); the
 * float combination differs only in rounding order. docs/kernels.md proves
 * that no integer accumulator overflows.
 *
 * Not here: building layouts (pack.c); the fp32 path (nn/forward.c).
 */
#ifndef MQ_KERN_H
#define MQ_KERN_H

#include "quant/pack.h"

/* Quantized activations of up to cap_b tokens of up to cap_cols inputs.
 * Planned once (mq_kact_new), reused for every product: nothing is
 * allocated per token. */
typedef struct mq_kact {
    int cap_b, cap_kp;
    int B, cols, kp;   /* current batch and row length (kp = cols padded to 64) */
    int8_t *q;         /* (B, kp) xq, zero past cols */
    int8_t *qs;        /* (B, kp) the same in the stored order of pack.h (superblocks interleaved) */
    float *d;          /* (B, kp/32) block scales d_k */
    float *dvec;       /* (B, kp/64, 16) lanes 0-7 = d_2c, lanes 8-15 = d_2c+1 */
    float *bsum;       /* (B, kp/32) d_k * sum of xq in block k */
    float *gsum;       /* (B, kp/32) G_g of the matrix last given to mq_kact_group_sums */
    int gsum_group;    /* the group size gsum was computed for (0 = none) */
    float *xhat;       /* (B, kp) d_k * xq_j, filled by mq_kact_group_sums for an extra-precision
                        * matrix (the overflow lists gather from it) */
    float *xhat_t;     /* (kp, B) the same transposed, filled with xhat when B > 1 (prompt
                        * kernels add an overflow weight's column to all tokens at once) */
    bool xhat_ready;   /* xhat holds the current activations */
    /* Prompt copies (B > 1) for the AVX-512 gemm, whose tile is MQ_KACT_TT
     * tokens: a step is a superblock (its 8 chunks) or one tail chunk,
     * nsteps = mq_kact_nsteps(kp). Tokens past B (up to a multiple of
     * MQ_KACT_TT) are zero. NULL when cap_b == 1. */
    int8_t *xt;        /* (B4, kp) qs tile by tile, chunk-major: chunk c of token TT*T + j at
                        * xt[((T * kp/64 + c) * TT + j) * 64] (TT = MQ_KACT_TT) */
    float *dt;         /* (B4/TT, nsteps, TT, 16) the 16 lane scales of each step per token: d of
                        * the superblock's 16 blocks, or a tail chunk's dvec */
} mq_kact;

#define MQ_KACT_TT 3 /* tokens per tile of xt and dt */
/* Steps of a row of kp columns: its superblocks, then one per tail chunk. */
static inline int mq_kact_nsteps(int kp) {
    return kp / MQ_PACK_SUPER + (kp % MQ_PACK_SUPER) / MQ_PACK_CHUNK;
}

/* Activation scratch for max_b tokens of at most max_cols inputs. */
mq_kact *mq_kact_new(int max_b, int max_cols);
void mq_kact_free(mq_kact *a);
/* Quantize x (B, cols) into a (B <= cap_b, cols <= capacity, asserted). */
void mq_kact_quantize(mq_kact *a, const float *x, int B, int cols);
/* Fill a->gsum with G_g for p's groups (p->cols == a->cols, asserted) and,
 * when p has an overflow list, a->xhat. */
void mq_kact_group_sums(mq_kact *a, const mq_packed *p);

/* The block of group g that activation block k belongs to. */
static inline int mq_kern_group_of(const mq_packed *p, int k) {
    int g = (int)((int64_t)k * MQ_PACK_BLOCK / p->group);
    return g < p->ngroups ? g : p->ngroups - 1;
}

/* F(args..., r) with r a compile-time constant equal to bits (8, 6, 4, 3,
 * anything else 2): how each kernel file instantiates its width-specialised
 * inline bodies. */
#define MQ_KERN_BY_WIDTH(bits, F, ...)          \
    do {                                        \
        switch (bits) {                         \
        case 8: F(__VA_ARGS__, 8); break;       \
        case 6: F(__VA_ARGS__, 6); break;       \
        case 4: F(__VA_ARGS__, 4); break;       \
        case 3: F(__VA_ARGS__, 3); break;       \
        default: F(__VA_ARGS__, 2); break;      \
        }                                       \
    } while (0)

/* The first stored chunk of step s of a row with ns superblocks: a
 * superblock for s < ns, then one tail chunk each (mq_kact_nsteps). */
static inline int mq_kern_step_chunk(int s, int ns) { return s < ns ? 8 * s : 8 * ns + (s - ns); }

/* The prompt kernels unpack tiles of gr rows in K-slices of ks
 * superblocks (the last slice takes the tail chunks too). Having unpacked
 * the slice of rows o.. that ends at step s1, prefetch into L2 the packed
 * codes of the next one — the same rows' next slice, else the first slice
 * of the next tile (rows below o1) — which the unpack otherwise waits on
 * (docs/results.md §15). */
static inline void mq_kern_prefetch_next_slice(const mq_packed *p, int o, int o1, int gr, int s1, int ks, int r) {
    int ns = p->nsuper, nsteps = mq_kact_nsteps(p->kp);
    int on = s1 < nsteps ? o : o + gr, n0 = s1 < nsteps ? s1 : 0;
    if (on >= o1) return;
    int n1 = n0 + ks < ns ? n0 + ks : nsteps, nr = o1 - on < gr ? o1 - on : gr;
    size_t b0 = (size_t)mq_kern_step_chunk(n0, ns) * 8 * (size_t)r & ~(size_t)63,
           b1 = (size_t)mq_kern_step_chunk(n1, ns) * 8 * (size_t)r;
    for (int i = 0; i < nr; i++) {
        const char *row = (const char *)(p->data + (size_t)(on + i) * p->row_bytes);
        for (size_t b = b0; b < b1; b += 64) __builtin_prefetch(row + b, 0, 2);
    }
}

/* Extra precision, shared by every ISA (the list is sparse, ~5% of a row):
 * each overflow weight of row o is one level above the stored plane value,
 * so it adds its int8 activation x[j] once more to the integer dot of its
 * block. I: (kp/32) dots of row o; x: (kp) the token's int8 activations. */
static inline void mq_kern_over_dots(const mq_packed *p, int o, const int8_t *x, int32_t *I) {
    for (uint32_t n = p->over_ptr[o]; n < p->over_ptr[o + 1]; n++) I[p->over_col[n] / MQ_PACK_BLOCK] += x[p->over_col[n]];
}
/* The same contribution in float, for kernels that fold the per-block
 * scales before the overflow list: sum over row o's overflow weights of
 * s_g * xhat_j (xhat_j = d_k * x[j]), token t of a (a->xhat filled by
 * mq_kact_group_sums, asserted). */
static inline float mq_kern_over_float(const mq_packed *p, int o, const mq_kact *a, int t) {
    MQ_ASSERT(a->xhat_ready);
    const float *s = p->scale + (size_t)o * p->ngroups, *xh = a->xhat + (size_t)t * a->kp;
    const uint16_t *col = p->over_col;
    uint32_t n = p->over_ptr[o], n1 = p->over_ptr[o + 1];
    /* four independent sums: a row has ~10 entries, a single chain would
     * wait for each add */
    float y0 = 0.0f, y1 = 0.0f, y2 = 0.0f, y3 = 0.0f;
    if (p->ngroups == 1) { /* per channel: one scale, applied once */
        for (; n + 4 <= n1; n += 4) {
            y0 += xh[col[n]];
            y1 += xh[col[n + 1]];
            y2 += xh[col[n + 2]];
            y3 += xh[col[n + 3]];
        }
        for (; n < n1; n++) y0 += xh[col[n]];
        return s[0] * ((y0 + y1) + (y2 + y3));
    }
    uint32_t G = (uint32_t)p->group; /* a multiple of 32 (pack.h): column j's block lies in group j / G */
    for (; n + 4 <= n1; n += 4) {
        y0 += s[col[n] / G] * xh[col[n]];
        y1 += s[col[n + 1] / G] * xh[col[n + 1]];
        y2 += s[col[n + 2] / G] * xh[col[n + 2]];
        y3 += s[col[n + 3] / G] * xh[col[n + 3]];
    }
    for (; n < n1; n++) y0 += s[col[n] / G] * xh[col[n]];
    return (y0 + y1) + (y2 + y3);
}

/* One ISA's kernels. Rows o0..o1-1 of p; a quantized (and group sums
 * computed for p). All three include the bias term and the overflow list.
 *  dots: out (o1-o0, kp/32) = the integer dot products I_k of token t.
 *  gemv: y[o] for o in o0..o1-1 from token 0 (decode, B = 1).
 *  gemm: y[t*ldy + o] for every token t < a->B (prompt), weights unpacked
 *        once per tile of tokens. */
typedef struct {
    const char *name;
    void (*dots)(const mq_packed *p, int o0, int o1, const mq_kact *a, int t, int32_t *out);
    void (*gemv)(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y);
    void (*gemm)(const mq_packed *p, int o0, int o1, const mq_kact *a, float *y, int ldy);
} mq_kern_ops;

extern const mq_kern_ops mq_kern_scalar_ops;
extern const mq_kern_ops mq_kern_avx2_ops;
extern const mq_kern_ops mq_kern_avx512_ops;
extern const mq_kern_ops mq_kern_amx_ops; /* AVX-512 decode + AMX-INT8 prompt products (kern_amx.c) */
/* Rows per tile of the AVX-512 decode kernel: 2 or 4 (0: this CPU's
 * default, 2 on Intel, 4 elsewhere; kern_avx512.c). For tests and
 * measurements; set before products run. */
void mq_kern_set_gemv_rows(int rows);
/* Does this CPU and OS run mq_kern_amx_ops (kern_amx.c)? */
bool mq_kern_amx_usable(void);

/* The variant named "scalar", "avx2", "avx512" or "amx" if this CPU runs it, else
 * NULL (unknown name or missing ISA). */
const mq_kern_ops *mq_kern_find(const char *name);
/* The variant in use: MQ_KERNELS when set to a variant name (one the CPU
 * lacks or an unknown name falls back to the best, with a warning on stderr
 * once), else the best the CPU supports. Chosen once per process. */
const mq_kern_ops *mq_kern_active(void);
/* MQ_KERNELS=float: packed kernels off, linears served as dequantized fp32
 * (the accuracy reference). */
bool mq_kern_float_forced(void);

/* y (B, p->rows) = x (B, p->cols) times the packed matrix, on the OpenMP
 * threads (rows in slices of 16, so no two threads write one cache line of y
 * when p->rows is a multiple of 16), with the active variant. a: scratch
 * with room for B tokens of p->cols. */
void mq_kern_matmul(const mq_packed *p, const float *x, int B, float *y, mq_kact *a);
/* The same for n <= 4 matrices that share one input (q/k/v, gate/up): y[i]
 * (B, p[i]->rows) = x times p[i]. The input is quantized once and the
 * products run in one parallel region (each thread its slice of every
 * matrix). All p[i] must have the same cols and group (asserted; callers
 * check mq_kern_can_share first). */
void mq_kern_matmul_shared(int n, const mq_packed *const *p, const float *x, int B, float *const *y, mq_kact *a);
/* Can p[0..n-1] share one quantized input (same cols and group)? */
bool mq_kern_can_share(int n, const mq_packed *const *p);

#endif
