/*
 * ops.h — the training ops of matquant: forward/backward pairs in fp32 for
 * every operation of a transformer block that a loss flows through, and the
 * fake quantizer with learnable clipping (LWC) that OmniQuant and QAT train
 * through. Used by train/omniquant.c (block by block) and train/qat.c
 * (whole model).
 *
 * Conventions (all ops):
 *  - Row-major fp32. Tokens are rows: a (B, T, C) tensor is B sequences of T
 *    positions with C features, stored as B*T rows of C floats. Shapes are
 *    given in the comment of every pointer parameter.
 *  - Argument order as STYLE.md: outputs, caches, inputs, weights, sizes;
 *    gradients prefixed `d`.
 *  - Every _bwd ACCUMULATES into its gradient outputs (dx += ...), as in
 *    llm.c, so that a tensor read by several ops (the residual stream, the
 *    normed input of q/k/v or gate/up) just sums its gradients. Callers zero
 *    gradient buffers before a step. A gradient pointer may be NULL when
 *    that gradient is not wanted (documented per op).
 *  - No allocation: caches and scratch are the caller's (sizes documented;
 *    attention_bwd_scratch gives the one size that depends on the threads).
 *  - Matrix products go through OpenBLAS sgemm, split over OpenMP threads
 *    (one pool, OpenBLAS itself single-threaded as in nn/forward.c); the
 *    element-wise ops use OpenMP loops.
 *  - Forward ops may run in place only where said.
 *  - The math of every backward is derived in docs/derivations/<op>.md and
 *    checked against central finite differences in double (tests/test_ops.c).
 *
 * Not here: the model's inference forward pass with its KV cache
 * (nn/forward.c, whose op order and numerics these ops follow), optimizers
 * (train/optim.h), the quantization contract itself (quant/ref.h; the fake
 * quantizer reproduces its arithmetic in fp32, so folding learned ranges with
 * mq_ref_quantize_clip gives the same dequantized weights).
 * References: transformers modeling_llama / modeling_gemma2 (RMSNorm, RoPE
 * rotate-half, GQA, soft-capping, sliding window p - W < j <= p, tanh GELU);
 * OmniQuant (Shao et al., ICLR 2024) §3.2 for LWC; MatQuant (Nair et al.,
 * 2025) §3 for slicing; Bengio et al. 2013 / LSQ (Esser et al., 2020) for the
 * straight-through estimator.
 */
#ifndef MQ_TRAIN_OPS_H
#define MQ_TRAIN_OPS_H

#include "core/core.h"

/* ================================================================ matmul */

/* out(N, O) = inp(N, K) @ w(O, K)^T + bias(O) (bias may be NULL).
 * out must not alias inp or w. */
void matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int N, int K, int O);
/* Gradients of matmul_fwd given dout(N, O):
 *   dinp(N, K) += dout @ w,  dw(O, K) += dout^T @ inp,  dbias(O) += sum_n dout.
 * Any of dinp, dw, dbias may be NULL (not computed). */
void matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                int N, int K, int O);

/* =============================================================== rmsnorm */

/* out(N, C) = inp * rstd * g, rstd(N) = 1 / sqrt(mean(inp^2) + eps) (the
 * cache), g = w or, with plus_one (gemma2), 1 + w. w (C). out may equal inp. */
void rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps,
                 bool plus_one);
/* dinp(N, C) += d/dinp, dw(C) += d/dw given dout(N, C), the forward's inp and
 * rstd cache. dinp or dw may be NULL. dinp must not alias dout. */
void rmsnorm_bwd(float *dinp, float *dw, const float *dout, const float *inp, const float *w, const float *rstd,
                 int N, int C, bool plus_one);

/* ================================================================== rope */

/* Rotary embedding, rotate-half over each head (pairs (i, i + D/2)) as
 * nn/forward.c: x is (B, T, n_heads * D), row (b, t) is at position t, angle
 * t * inv_freq[i] computed in fp32. out may equal inp. D even. */
void rope_fwd(float *out, const float *inp, const float *inv_freq, int B, int T, int n_heads, int D);
/* dinp(B, T, n_heads*D) += R^T dout (the inverse rotation). dinp must not
 * alias dout. */
void rope_bwd(float *dinp, const float *dout, const float *inv_freq, int B, int T, int n_heads, int D);

/* ============================================================= attention */

typedef struct {
    int n_heads;     /* H query heads */
    int n_kv_heads;  /* KV heads; H % KV == 0, head h reads kv head h / (H / KV) (GQA) */
    int head_dim;    /* D */
    float scale;     /* score scale (1/sqrt(D), or gemma2's query_pre_attn_scalar^-1/2) */
    float softcap;   /* scores -> cap * tanh(scores / cap); 0 = off */
    int window;      /* sliding window W: key j visible from query p iff p - W < j <= p; 0 = none */
} mq_attn_cfg;

/* Causal self-attention within each of B sequences of T positions:
 *   S = scale * Q_h K_{g(h)}^T (then soft-capped), P = softmax over visible
 *   keys, out_h = P V_{g(h)}.
 * q (B, T, H*D), k, v (B, T, KV*D) (RoPE already applied), out (B, T, H*D).
 * att (B, H, T, T): the probabilities P, the cache for attention_bwd
 * (masked entries are 0). */
void attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                   const mq_attn_cfg *a);
/* Floats of scratch attention_bwd needs for T positions with the current
 * OpenMP thread count (2 * T * T per thread). */
size_t attention_bwd_scratch(int T);
/* dq (B, T, H*D), dk, dv (B, T, KV*D) += gradients given dout (B, T, H*D),
 * the forward's q, k, v and att. scratch: attention_bwd_scratch(T) floats.
 * All three gradients are required. */
void attention_bwd(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *q,
                   const float *k, const float *v, const float *att, int B, int T, const mq_attn_cfg *a);

/* ============================================================ gated FFN */

/* out(n) = silu(gate) * up, silu(x) = x / (1 + exp(-x)). out may equal gate or up. */
void swiglu_fwd(float *out, const float *gate, const float *up, size_t n);
/* dgate(n) += dout * up * silu'(gate), dup(n) += dout * silu(gate). */
void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);
/* out(n) = gelu_tanh(gate) * up, gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * out may equal gate or up. */
void geglu_fwd(float *out, const float *gate, const float *up, size_t n);
void geglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* ====================================================== fake quantizer */

/* Shape and widths of one fake-quantized weight. */
typedef struct {
    int rows, cols;  /* the weight (rows, cols) = (out, in) */
    int group;       /* columns per quantization group; cols (or 0) = per output channel */
    int grid_bits;   /* N: the grid has 2^N - 1 steps over [lo', hi']: 8 = the int8 parent grid
                        (MatQuant), r = a native r-bit grid (the single-width OmniQuant baseline) */
    int bits;        /* r <= N: the slice width the output is dequantized at */
} mq_fq_shape;

/* The LWC logits' initial value (OmniQuant: sigmoid(4) ~ 0.982 of the range). */
#define MQ_LWC_INIT 4.0f

/* Fake-quantize w (rows, cols) at slice r with learnable clipping:
 * per row and group (index k, G = cols/group groups per row),
 *   hi' = max(sigmoid(u[k]) * max(w_k), 0),  lo' = min(sigmoid(l[k]) * min(w_k), 0)
 *   a   = (hi' - lo') / (2^N - 1),  z = clamp(round(-lo'/a), 0, 2^N - 1)
 *   q   = clamp(round(w / a) + z, 0, 2^N - 1)                 round: ties to even
 *   s   = 2^d * min((q + 2^(d-1)) >> d, 2^r - 1)  (d = N - r; s = q when d = 0)
 *   wq  = a * (s - z)
 * exactly the fp32 arithmetic of quant/ref.c (mq_ref_grid / mq_ref_code for
 * N = 8, mq_ref_grid_bits / mq_ref_code_bits for N = r), so
 * mq_ref_quantize_clip(w, lo', hi') followed by mq_ref_dequant at r gives wq.
 * A group with a = 0 gives wq = 0. u, l: (rows, G) logits. wq (rows, cols)
 * must not alias w. */
void fakequant_fwd(float *wq, const float *w, const float *u, const float *l, const mq_fq_shape *s);
/* Straight-through backward of fakequant_fwd given dwq (rows, cols):
 * every round (of w/a, of -lo'/a and the slice's) has derivative 1; every
 * clamp (of q, z, the slice, and the widening max/min with 0) passes the
 * gradient where its argument is strictly inside the range and blocks it
 * outside and on the bounds (its exact derivative away from the kinks; at a
 * kink 0, as torch.clamp's backward, so that PyTorch goldens match; a code
 * sitting exactly on 0 or 2^N - 1 counts as clipped). max(w_k)/min(w_k) pass their gradient to the
 * (first) maximal/minimal element. So the result is the exact derivative of
 * the forward with each round replaced by x + (round(x0) - x0), x0 frozen.
 * dw (rows, cols), du, dl (rows, G) += gradients; any may be NULL. */
void fakequant_bwd(float *dw, float *du, float *dl, const float *dwq, const float *w, const float *u,
                   const float *l, const mq_fq_shape *s);
/* The grid of one group as fakequant_codes leaves it for the slices. */
typedef struct {
    float a, z;         /* step and zero code (a = 0: the group dequantizes to 0) */
    float hi, lo, su, sl; /* widened bounds hi', lo', sigmoid(u), sigmoid(l) */
    float mx, mn;       /* max(w_k), min(w_k) */
    int imx, imn;       /* their first positions in the group */
    bool pass_z;        /* z's clamp inactive (gradient passes) */
} mq_fq_group;

/* The slice-independent half of fakequant_fwd, for training several slices
 * of one weight per step: q (rows, cols) the clamped N-bit codes
 * clamp(round(w / a) + z, 0, 2^N - 1) and g (rows, G) the grids. w must be
 * finite (the caller checks; a NaN weight gives code 0 here, not NaN).
 * s->bits is not used. */
void fakequant_codes(uint8_t *q, mq_fq_group *g, const float *w, const float *u, const float *l,
                     const mq_fq_shape *s);
/* wq (rows, cols) at slice s->bits from fakequant_codes' q and g:
 * bit-identical to fakequant_fwd(wq, w, u, l, s). */
void fakequant_slice_fwd(float *wq, const uint8_t *q, const mq_fq_group *g, const mq_fq_shape *s);
/* fakequant_bwd from the codes: the same straight-through gradients into
 * dw (rows, cols), du, dl (rows, G) (any may be NULL), with the per-element
 * 1/a factor taken out of the group sums (so equal to fakequant_bwd up to
 * fp32 summation order, not bit-identical). */
void fakequant_slice_bwd(float *dw, float *du, float *dl, const float *dwq, const float *w, const uint8_t *q,
                         const mq_fq_group *g, const mq_fq_shape *s);

/* The clipped ranges the logits stand for: lo[k] = lo', hi[k] = hi' (rows, G),
 * as mq_ref_quantize_clip and mq_ref_grid_bits take them. */
void fakequant_ranges(float *lo, float *hi, const float *w, const float *u, const float *l, const mq_fq_shape *s);

/* ============================================================ helpers */

/* y(n) += x(n) (the residual connection's forward and its backward). */
void add_inplace(float *y, const float *x, size_t n);
/* Mean squared error sum((a - b)^2) / n in double; with da non-NULL,
 * da(n) += scale * 2 (a - b) / n. */
double mse_fwd_bwd(float *da, const float *a, const float *b, size_t n, float scale);

#endif
