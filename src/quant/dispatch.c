/*
 * dispatch.c — choosing the kernel variant at run time
 * (__builtin_cpu_supports; MQ_KERNELS=scalar|avx2|avx512|amx forces one,
 * MQ_KERNELS=float turns the packed path off), the int8 activation
 * quantization shared by all variants, and the threaded product.
 *
 * Not here: the kernels themselves (kern_scalar.c, kern_avx2.c,
 * kern_avx512.c). Activation quantization is shared on purpose: one
 * definition keeps the integer inputs of every variant identical (full
 * blocks in SSE2, which every x86-64 has, giving the scalar loop's numbers
 * bit for bit, tested; 8x faster than the scalar loop, which cost a third
 * of a 2048x2048 int2 decode product).
 */
#include "quant/kern.h"


#include <emmintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* -------------------------------------------------------- activations */

mq_kact *mq_kact_new(int max_b, int max_cols) {
    MQ_ASSERT(max_b > 0 && max_cols > 0);
    mq_kact *a = mq_calloc(1, sizeof *a);
    a->cap_b = max_b;
    a->cap_kp = (max_cols + MQ_PACK_CHUNK - 1) / MQ_PACK_CHUNK * MQ_PACK_CHUNK;
    size_t n = (size_t)max_b * (size_t)a->cap_kp, nb = n / MQ_PACK_BLOCK;
    /* q and d: room for whole tiles of 16 tokens (kern_amx.c loads 16
     * token rows at a time; the padding rows are zeros, never stored) */
    size_t n16 = (size_t)(max_b + 15) / 16 * 16 * (size_t)a->cap_kp;
    a->q = mq_aligned_alloc(n16);
    memset(a->q, 0, n16);
    a->qs = mq_aligned_alloc(n);
    a->d = mq_aligned_alloc(n16 / MQ_PACK_BLOCK * sizeof(float));
    memset(a->d, 0, n16 / MQ_PACK_BLOCK * sizeof(float));
    a->dvec = mq_aligned_alloc(n / 4 * sizeof(float));
    a->bsum = mq_aligned_alloc(nb * sizeof(float));
    a->gsum = mq_aligned_alloc(nb * sizeof(float));
    a->xhat = mq_aligned_alloc(n * sizeof(float));
    a->xhat_t = max_b > 1 ? mq_aligned_alloc(n * sizeof(float)) : NULL;
    if (max_b > 1) { /* nsteps <= kp/64 chunks, each step's scales 16 floats per token */
        size_t n4 = (size_t)(max_b + MQ_KACT_TT - 1) / MQ_KACT_TT * MQ_KACT_TT * (size_t)a->cap_kp;
        a->xt = mq_aligned_alloc(n4);
        a->dt = mq_aligned_alloc(n4 / 4 * sizeof(float));
    }
    return a;
}

void mq_kact_free(mq_kact *a) {
    if (!a) return;
    free(a->q); free(a->qs); free(a->d); free(a->dvec); free(a->bsum); free(a->gsum); free(a->xhat); free(a->xhat_t);
    free(a->xt); free(a->dt);
    free(a);
}

/* One full block of 32 inputs with SSE2 (baseline x86-64), the same numbers
 * as the scalar loop below: amax = max |x| (a NaN input is skipped, as by
 * fmaxf), xq = x * (127 / amax) rounded by cvtps2dq under the default
 * rounding mode (to nearest even, as nearbyintf), clamped to +-127. Returns
 * amax; *sum = the sum of the 32 codes. */
static float quant_block32(const float *x, int8_t *q, int32_t *sum) {
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 m = _mm_setzero_ps();
    for (int j = 0; j < MQ_PACK_BLOCK; j += 4) m = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(x + j), absmask), m);
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 0x4E));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, 0xB1));
    float amax = _mm_cvtss_f32(m), inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    __m128 vi = _mm_set1_ps(inv);
    const __m128i lo = _mm_set1_epi16(-127), hi = _mm_set1_epi16(127), one = _mm_set1_epi16(1);
    __m128i s32 = _mm_setzero_si128();
    for (int j = 0; j < MQ_PACK_BLOCK; j += 16) {
        __m128i a0 = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(x + j), vi));
        __m128i a1 = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(x + j + 4), vi));
        __m128i a2 = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(x + j + 8), vi));
        __m128i a3 = _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(x + j + 12), vi));
        __m128i w0 = _mm_min_epi16(_mm_max_epi16(_mm_packs_epi32(a0, a1), lo), hi);
        __m128i w1 = _mm_min_epi16(_mm_max_epi16(_mm_packs_epi32(a2, a3), lo), hi);
        s32 = _mm_add_epi32(s32, _mm_add_epi32(_mm_madd_epi16(w0, one), _mm_madd_epi16(w1, one)));
        _mm_storeu_si128((__m128i *)(q + j), _mm_packs_epi16(w0, w1));
    }
    s32 = _mm_add_epi32(s32, _mm_shuffle_epi32(s32, 0x4E));
    s32 = _mm_add_epi32(s32, _mm_shuffle_epi32(s32, 0xB1));
    *sum = _mm_cvtsi128_si32(s32);
    return amax;
}

/* One superblock's codes q[0..512) into the interleaved order of pack.h:
 * the 4 columns of part v of block l at qs[64 v + 4 l]. Seen as 4-byte
 * words, block l's 8 words are row l of a 16 x 8 matrix and qs is its
 * transpose, done here in 4 x 4 tiles of words with SSE2 unpacks (the
 * word-by-word copy it replaced was ~20% of a decode token's activation
 * quantization; docs/results.md §19). */
static void super_reorder(const int8_t *q, int8_t *qs) {
    for (int l0 = 0; l0 < 16; l0 += 4)
        for (int v0 = 0; v0 < 8; v0 += 4) {
            __m128i r0 = _mm_loadu_si128((const __m128i *)(q + 32 * (l0 + 0) + 4 * v0));
            __m128i r1 = _mm_loadu_si128((const __m128i *)(q + 32 * (l0 + 1) + 4 * v0));
            __m128i r2 = _mm_loadu_si128((const __m128i *)(q + 32 * (l0 + 2) + 4 * v0));
            __m128i r3 = _mm_loadu_si128((const __m128i *)(q + 32 * (l0 + 3) + 4 * v0));
            __m128i t0 = _mm_unpacklo_epi32(r0, r1), t1 = _mm_unpackhi_epi32(r0, r1);
            __m128i t2 = _mm_unpacklo_epi32(r2, r3), t3 = _mm_unpackhi_epi32(r2, r3);
            _mm_storeu_si128((__m128i *)(qs + 64 * (v0 + 0) + 4 * l0), _mm_unpacklo_epi64(t0, t2));
            _mm_storeu_si128((__m128i *)(qs + 64 * (v0 + 1) + 4 * l0), _mm_unpackhi_epi64(t0, t2));
            _mm_storeu_si128((__m128i *)(qs + 64 * (v0 + 2) + 4 * l0), _mm_unpacklo_epi64(t1, t3));
            _mm_storeu_si128((__m128i *)(qs + 64 * (v0 + 3) + 4 * l0), _mm_unpackhi_epi64(t1, t3));
        }
}

/* Token t's slots of a->xt and a->dt (kern.h): from its qs, d and dvec, or
 * zeros for a padding token (t >= B). */
static void tile_token(mq_kact *a, int t) {
    int kp = a->kp, nc = kp / MQ_PACK_CHUNK, ns = kp / MQ_PACK_SUPER, nsteps = mq_kact_nsteps(kp);
    int T = t / MQ_KACT_TT, j = t % MQ_KACT_TT;
    int8_t *xt = a->xt + ((size_t)T * nc * MQ_KACT_TT + (size_t)j) * MQ_PACK_CHUNK;
    float *dt = a->dt + ((size_t)T * nsteps * MQ_KACT_TT + (size_t)j) * 16;
    bool pad = t >= a->B;
    const int8_t *qs = a->qs + (size_t)t * kp;
    const float *d = a->d + (size_t)t * (kp / MQ_PACK_BLOCK), *dv = a->dvec + (size_t)t * (kp / 4);
    for (int c = 0; c < nc; c++) {
        int8_t *dst = xt + (size_t)c * MQ_KACT_TT * MQ_PACK_CHUNK;
        if (pad) memset(dst, 0, MQ_PACK_CHUNK);
        else memcpy(dst, qs + (size_t)c * MQ_PACK_CHUNK, MQ_PACK_CHUNK);
    }
    for (int s = 0; s < nsteps; s++) {
        float *dst = dt + (size_t)s * MQ_KACT_TT * 16;
        if (pad) memset(dst, 0, 16 * sizeof(float));
        else memcpy(dst, s < ns ? d + 16 * s : dv + 16 * (8 * ns + s - ns), 16 * sizeof(float));
    }
}

void mq_kact_quantize(mq_kact *a, const float *x, int B, int cols) {
    int kp = (cols + MQ_PACK_CHUNK - 1) / MQ_PACK_CHUNK * MQ_PACK_CHUNK;
    MQ_ASSERT(B > 0 && B <= a->cap_b && kp <= a->cap_kp);
    a->B = B;
    a->cols = cols;
    a->kp = kp;
    a->gsum_group = 0;
    a->xhat_ready = false;
    int nb = kp / MQ_PACK_BLOCK;
#pragma omp parallel for if ((size_t)B * cols > 65536)
    for (int t = 0; t < B; t++) {
        const float *xr = x + (size_t)t * cols;
        int8_t *q = a->q + (size_t)t * kp;
        float *d = a->d + (size_t)t * nb, *bs = a->bsum + (size_t)t * nb;
        for (int k = 0; k < nb; k++) {
            int j0 = k * MQ_PACK_BLOCK, j1 = j0 + MQ_PACK_BLOCK < cols ? j0 + MQ_PACK_BLOCK : cols;
            if (j1 - j0 == MQ_PACK_BLOCK) {
                int32_t s32;
                float amax = quant_block32(xr + j0, q + j0, &s32);
                d[k] = amax / 127.0f;
                bs[k] = d[k] * (float)s32;
                continue;
            }
            float amax = 0.0f;
            for (int j = j0; j < j1; j++) amax = fmaxf(amax, fabsf(xr[j]));
            float dk = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0;
            for (int j = j0; j < j0 + MQ_PACK_BLOCK; j++) {
                int v = 0;
                if (j < j1) {
                    v = (int)nearbyintf(xr[j] * inv);
                    v = v > 127 ? 127 : v < -127 ? -127 : v;
                }
                q[j] = (int8_t)v;
                sum += v;
            }
            d[k] = dk;
            bs[k] = dk * (float)sum;
        }
        int8_t *qs = a->qs + (size_t)t * kp;
        int ns = kp / MQ_PACK_SUPER * MQ_PACK_SUPER;
        for (int j0 = 0; j0 < ns; j0 += MQ_PACK_SUPER) super_reorder(q + j0, qs + j0);
        memcpy(qs + ns, q + ns, (size_t)(kp - ns));
        float *dv = a->dvec + (size_t)t * (kp / 4);
        for (int c = 0; c < kp / MQ_PACK_CHUNK; c++) { /* lanes 0-7 block 2c, 8-15 block 2c + 1 */
            __m128 d0 = _mm_set1_ps(d[2 * c]), d1 = _mm_set1_ps(d[2 * c + 1]);
            _mm_storeu_ps(dv + c * 16, d0);
            _mm_storeu_ps(dv + c * 16 + 4, d0);
            _mm_storeu_ps(dv + c * 16 + 8, d1);
            _mm_storeu_ps(dv + c * 16 + 12, d1);
        }
        if (B > 1 && a->xt) tile_token(a, t);
    }
    /* the last tile's padding tokens */
    for (int t = B; B > 1 && a->xt && t % MQ_KACT_TT != 0; t++) tile_token(a, t);
}

void mq_kact_group_sums(mq_kact *a, const mq_packed *p) {
    MQ_ASSERT(p->cols == a->cols);
    int nb = a->kp / MQ_PACK_BLOCK;
    for (int t = 0; t < a->B; t++) {
        float *G = a->gsum + (size_t)t * nb;
        const float *bs = a->bsum + (size_t)t * nb;
        for (int g = 0; g < p->ngroups; g++) G[g] = 0.0f;
        for (int k = 0; k < nb; k++) G[mq_kern_group_of(p, k)] += bs[k];
    }
    a->gsum_group = p->group;
    if (p->extra && !a->xhat_ready) {
        bool par = (size_t)a->B * (size_t)a->kp > 65536;
#pragma omp parallel for if (par)
        for (int t = 0; t < a->B; t++) {
            const int8_t *q = a->q + (size_t)t * a->kp;
            const float *d = a->d + (size_t)t * nb;
            float *xh = a->xhat + (size_t)t * a->kp;
            for (int j = 0; j < a->kp; j++) xh[j] = d[j / MQ_PACK_BLOCK] * (float)q[j];
        }
        if (a->B > 1) /* transposed in tiles of 64 columns x 16 tokens (threads: disjoint columns) */
#pragma omp parallel for if (par)
            for (int j0 = 0; j0 < a->kp; j0 += 64)
                for (int t0 = 0; t0 < a->B; t0 += 16) {
                    int t1 = t0 + 16 < a->B ? t0 + 16 : a->B, j1 = j0 + 64;
                    for (int j = j0; j < j1; j++)
                        for (int t = t0; t < t1; t++)
                            a->xhat_t[(size_t)j * a->B + t] = a->xhat[(size_t)t * a->kp + j];
                }
        a->xhat_ready = true;
    }
}

/* ----------------------------------------------------------- dispatch */

static bool cpu_has(const char *name) {
    __builtin_cpu_init();
    if (!strcmp(name, "scalar")) return true;
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (!strcmp(name, "amx")) return cpu_has("avx512") && mq_kern_amx_usable();
    return false;
}

const mq_kern_ops *mq_kern_find(const char *name) {
    if (!name || !cpu_has(name)) return NULL;
    if (!strcmp(name, "scalar")) return &mq_kern_scalar_ops;
    if (!strcmp(name, "avx2")) return &mq_kern_avx2_ops;
    if (!strcmp(name, "avx512")) return &mq_kern_avx512_ops;
    if (!strcmp(name, "amx")) return &mq_kern_amx_ops;
    return NULL;
}

static const mq_kern_ops *choose(void) {
    const char *env = getenv("MQ_KERNELS");
    if (env && *env && strcmp(env, "float") != 0) {
        const mq_kern_ops *k = mq_kern_find(env);
        if (k) return k;
        fprintf(stderr, "matquant: MQ_KERNELS=%s is not a kernel variant this CPU runs "
                "(scalar, avx2, avx512, amx, float); using the best available\n", env);
    }
    const char *order[] = {"amx", "avx512", "avx2", "scalar"};
    for (int i = 0; i < 4; i++)
        if (cpu_has(order[i])) return mq_kern_find(order[i]);
    return &mq_kern_scalar_ops;
}

const mq_kern_ops *mq_kern_active(void) {
    static const mq_kern_ops *active;
    const mq_kern_ops *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (!k) {
        k = choose();
        __atomic_store_n(&active, k, __ATOMIC_RELEASE);
    }
    return k;
}

bool mq_kern_float_forced(void) {
    const char *env = getenv("MQ_KERNELS");
    return env && !strcmp(env, "float");
}

/* ------------------------------------------------------------ product */

#define BLK 16 /* rows per block, the unit of work: one 64-byte line of y, so no two threads write one line */
#define CLAIM_BYTES 32768 /* decode: weight bytes a thread takes at a time from the front of its region */
#define MAX_T 64 /* threads one product is split over at most */

/* Rows of the n matrices p[] (one quantized input a) on the OpenMP threads.
 * The matrices' 16-row blocks, one after another, form one sequence cut
 * into T contiguous regions, one per thread. A thread takes its own
 * region from the front in claims of ~CLAIM_BYTES of weights (one block a
 * claim for prompts), so that its claims follow one another in memory and
 * the kernels' software prefetch, which runs 16 KiB ahead of the rows in
 * hand, has the next claim's first lines in flight when it starts. A thread
 * whose region is done steals from the back of another's: half of what is
 * left there, at most one claim, so that a thread slowed by another job,
 * an interrupt or the hypervisor does not leave the other spinning at the
 * barrier, and the threads end within about a claim of each other. The
 * scheme before this one (a static 7/8 of each matrix, the rest in 32-row
 * items from one shared counter) ran its shared items at about a third of
 * the static part's speed in decode, each item starting a cold stream;
 * docs/results.md §19. A region's front and back are one 64-bit word (front
 * in the low half), changed by compare-and-swap, in a cache line of its
 * own: the owner's claims touch only its line until someone steals. */
typedef struct {
    _Alignas(64) uint64_t fb;
} region;

/* Rows o0..o1-1 of p: the decode kernel for one token, else the prompt kernel. */
static inline void rows(const mq_kern_ops *k, const mq_packed *p, int o0, int o1, const mq_kact *a, int B, float *y) {
    if (B == 1) k->gemv(p, o0, o1, a, y);
    else k->gemm(p, o0, o1, a, y, p->rows);
}

/* Takes up to c blocks from region r: from its front (own = true; at most a
 * quarter of what is left once that is small, so the owner's last claims
 * shrink as stealers' do) or from its back (half of what is left, at most c).
 * Returns the count taken (0: the region is empty) and the first block in *b0. */
static int take(region *r, int c, bool own, int *b0) {
    uint64_t v = __atomic_load_n(&r->fb, __ATOMIC_RELAXED);
    for (;;) {
        uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b) return 0;
        int left = (int)(b - f), k = own ? left / 4 : (left + 1) / 2;
        if (k > c) k = c;
        if (k < 1) k = 1;
        uint64_t nv = own ? ((uint64_t)b << 32 | (f + (uint32_t)k)) : ((uint64_t)(b - (uint32_t)k) << 32 | f);
        if (__atomic_compare_exchange_n(&r->fb, &v, nv, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            *b0 = own ? (int)f : (int)(b - (uint32_t)k);
            return k;
        }
    }
}

static void run_rows(const mq_kern_ops *k, int n, const mq_packed *const *p, const mq_kact *a, int B,
                     float *const *y, int T) {
    if (T <= 1) {
        for (int i = 0; i < n; i++) rows(k, p[i], 0, p[i]->rows, a, B, y[i]);
        return;
    }
    if (T > MAX_T) T = MAX_T;
    int off[5] = {0}; /* matrix i's blocks are off[i]..off[i+1]-1 of the sequence */
    for (int i = 0; i < n; i++) off[i + 1] = off[i] + (p[i]->rows + BLK - 1) / BLK;
    int nb = off[n];
    if (T > nb) T = nb;
    int claim = 1;
    if (B == 1) {
        size_t blk_bytes = (size_t)BLK * p[0]->row_bytes;
        claim = blk_bytes >= CLAIM_BYTES ? 1 : (int)(CLAIM_BYTES / blk_bytes);
    }
    region reg[MAX_T];
    for (int t = 0; t < T; t++)
        reg[t].fb = (uint64_t)((int64_t)nb * (t + 1) / T) << 32 | (uint64_t)((int64_t)nb * t / T);
#pragma omp parallel num_threads(T)
    {
        /* every thread visits every region, its own first: a team smaller
         * than asked for (nested, OMP_THREAD_LIMIT) still does all of them */
        int t = omp_get_thread_num();
        for (int step = 0; step < T; step++) {
            int v = (t + step) % T, b0, c;
            while ((c = take(&reg[v], claim, step == 0 && v == t, &b0)) > 0) {
                for (int i = 0, b1 = b0 + c; i < n && b0 < b1; i++) {
                    if (b0 >= off[i + 1]) continue;
                    int e = b1 < off[i + 1] ? b1 : off[i + 1];
                    int o0 = (b0 - off[i]) * BLK, o1 = (e - off[i]) * BLK;
                    rows(k, p[i], o0, o1 < p[i]->rows ? o1 : p[i]->rows, a, B, y[i]);
                    b0 = e;
                }
            }
        }
    }
}

void mq_kern_matmul(const mq_packed *p, const float *x, int B, float *y, mq_kact *a) {
    mq_kern_matmul_shared(1, &p, x, B, &y, a);
}

bool mq_kern_can_share(int n, const mq_packed *const *p) {
    if (n < 1 || n > 4) return false;
    for (int i = 0; i < n; i++)
        if (!p[i] || p[i]->cols != p[0]->cols || p[i]->group != p[0]->group) return false;
    return true;
}

void mq_kern_matmul_shared(int n, const mq_packed *const *p, const float *x, int B, float *const *y, mq_kact *a) {
    MQ_ASSERT(mq_kern_can_share(n, p));
    const mq_kern_ops *k = mq_kern_active();
    mq_kact_quantize(a, x, B, p[0]->cols);
    /* group sums depend only on the group size (shared); xhat is filled
     * when any of the matrices has an overflow list */
    int ex = 0;
    for (int i = 0; i < n; i++)
        if (p[i]->extra) ex = i;
    mq_kact_group_sums(a, p[ex]);
    /* one thread for small products (forking costs more than it saves) */
    size_t work = 0;
    int most_rows = 0;
    for (int i = 0; i < n; i++) {
        work += (size_t)p[i]->rows * (size_t)p[i]->cols;
        if (p[i]->rows > most_rows) most_rows = p[i]->rows;
    }
    int T = omp_get_max_threads();
    if (work < ((size_t)1 << 15) || most_rows < 32) T = 1;
    run_rows(k, n, p, a, B, y, T);
}
