/*
 * attn.h — attention of one query over a contiguous range of cached keys,
 * the decode step's attention (one token, every head): scores, soft-capping,
 * softmax and the weighted sum of values in one pass over the head's cache
 * rows, instead of two OpenBLAS calls per head whose packing of K and V
 * cost more than the products (~12% of an int2 decode step on the 1.1B
 * shape, docs/results.md §11).
 *
 * A scalar reference (the spec), an AVX-512 and an AVX2 + FMA variant,
 * picked at run time (MQ_KERNELS=scalar forces the reference); they differ
 * only in the order of float additions and in exp (core/vexp.h),
 * tests/test_attn.c bounds it.
 *
 * Not here: masking (the caller passes the visible keys j0..j1-1, which a
 * decode query sees all of), batches of queries (forward.c keeps OpenBLAS
 * for prompts, where the products are large enough).
 */
#ifndef MQ_NN_ATTN_H
#define MQ_NN_ATTN_H

#include <stddef.h>

/* out[0..D) = sum_j p_j v_j over keys j = j0..j1-1 (j1 > j0), where
 * p = softmax_j(cap(scale * q . k_j)), cap(x) = tanh(x / softcap) * softcap
 * when softcap > 0 (else identity); k_j = kc + j * ld, v_j = vc + j * ld.
 * scores: scratch of j1 - j0 floats. */
typedef void (*mq_attn_query_fn)(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                                 float softcap, int j0, int j1, float *scores, float *out);

void mq_attn_query_ref(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                       float softcap, int j0, int j1, float *scores, float *out);
void mq_attn_query_avx512(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                          float softcap, int j0, int j1, float *scores, float *out);
void mq_attn_query_avx2(const float *q, const float *kc, const float *vc, size_t ld, int D, float scale,
                        float softcap, int j0, int j1, float *scores, float *out);
/* The variant this CPU and MQ_KERNELS select: AVX-512 where vexp uses it,
 * else AVX2 + FMA where the CPU has them (MQ_KERNELS=scalar: the reference). */
mq_attn_query_fn mq_attn_query(void);

#endif
