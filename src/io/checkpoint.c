/*
 * checkpoint.c — write and read matquant checkpoint directories (see
 * checkpoint.h and docs/format.md). Unquantized tensors are written in the
 * dtype of their source tensor when it was F16 or BF16 and every value
 * still round-trips through it exactly (a tensor changed since loading, such
 * as a norm with LET scales folded in, stays F32), else in F32.
 */
#include "io/checkpoint.h"

#include "io/safetensors.h"
#include "quant/half.h"

#include <dirent.h>
#include <math.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *lin_suffix[MQ_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
};

void mq_linear_name(int layer, mq_lin_kind kind, char *buf, size_t cap) {
    snprintf(buf, cap, "model.layers.%d.%s", layer, lin_suffix[kind]);
}

float *mq_linear_weight(const mq_model *m, int layer, mq_lin_kind kind, int *rows, int *cols) {
    const mq_config *c = &m->cfg;
    const mq_layer *L = &m->layers[layer];
    int C = c->dim, F = c->hidden_dim, QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
    switch (kind) {
    case MQ_LIN_Q: *rows = QD; *cols = C; return L->wq;
    case MQ_LIN_K: *rows = KD; *cols = C; return L->wk;
    case MQ_LIN_V: *rows = KD; *cols = C; return L->wv;
    case MQ_LIN_O: *rows = C; *cols = QD; return L->wo;
    case MQ_LIN_GATE: *rows = F; *cols = C; return L->w_gate;
    case MQ_LIN_UP: *rows = F; *cols = C; return L->w_up;
    case MQ_LIN_DOWN: *rows = C; *cols = F; return L->w_down;
    default: break;
    }
    MQ_ASSERT(!"bad linear kind");
    return NULL;
}

bool mq_scope_has(const char *scope, mq_lin_kind kind) {
    if (!strcmp(scope, "all")) return true;
    return kind == MQ_LIN_GATE || kind == MQ_LIN_UP || kind == MQ_LIN_DOWN;
}

/* ============================================================== writing */

static mq_status copy_file(const char *src, const char *dst) {
    char *data;
    size_t len;
    mq_status st = mq_read_file(src, &data, &len);
    if (st) return st;
    st = mq_write_file_atomic(dst, data, len);
    free(data);
    return st;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = mq_path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Copy the tokenizer files of the model's source into dir. */
static mq_status write_tokenizer(const char *dir, const mq_model *m) {
    mq_status st = MQ_OK;
    if (m->tokenizer_path) {
        const char *name = mq_has_suffix(m->tokenizer_path, ".json") ? "tokenizer.json" : "tokenizer.bin";
        char *dst = mq_path_join(dir, name);
        st = copy_file(m->tokenizer_path, dst);
        free(dst);
        return st;
    }
    if (!strcmp(m->source_kind, "hf")) {
        static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                      "special_tokens_map.json", "tokenizer.bin"};
        for (size_t i = 0; i < sizeof files / sizeof files[0] && st == MQ_OK; i++) {
            char *src = mq_path_join(m->source, files[i]);
            if (mq_file_exists(src)) {
                char *dst = mq_path_join(dir, files[i]);
                st = copy_file(src, dst);
                free(dst);
            }
            free(src);
        }
        return st;
    }
    if (m->tok) {
        char *dst = mq_path_join(dir, "tokenizer.json");
        st = mq_tokenizer_save_json(m->tok, dst);
        free(dst);
    }
    return st;
}

/* Tensors converted to 16 bits for writing, freed after the write. */
typedef struct {
    void **p;
    int n, cap;
} tmp_bufs;

/* The tensor of an unquantized weight: data (fp32, or NULL when the model
 * serves it as the 16-bit h) in its source dtype (see the file comment). */
static mq_tensor src_tensor(const mq_model *m, const char *name, const float *data, const mq_half *h, int64_t rows,
                            int64_t cols, tmp_bufs *tb) {
    size_t n = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    mq_tensor t = {.name = name, .dtype = MQ_DTYPE_F32, .ndim = cols > 0 ? 2 : 1,
                   .shape = {rows, cols > 0 ? cols : 0}, .data = data, .nbytes = n * sizeof(float)};
    if (!data) {
        MQ_ASSERT(h && (size_t)h->rows * (size_t)h->cols == n);
        t.dtype = h->dtype;
        t.data = h->data;
        t.nbytes = n * sizeof(uint16_t);
        return t;
    }
    mq_dtype dt = mq_model_src_dtype(m, data);
    if (dt != MQ_DTYPE_F16 && dt != MQ_DTYPE_BF16) return t;
    uint16_t *b = mq_malloc(n * sizeof *b);
    bool exact = true;
    for (size_t i = 0; i < n && exact; i++) {
        b[i] = dt == MQ_DTYPE_F16 ? mq_f32_to_f16(data[i]) : mq_f32_to_bf16(data[i]);
        float back = dt == MQ_DTYPE_F16 ? mq_f16_to_f32(b[i]) : mq_bf16_to_f32(b[i]);
        exact = memcmp(&back, &data[i], sizeof back) == 0;
    }
    if (!exact) {
        free(b);
        return t;
    }
    if (tb->n == tb->cap) tb->p = mq_realloc(tb->p, (size_t)(tb->cap = tb->cap ? 2 * tb->cap : 64) * sizeof *tb->p);
    tb->p[tb->n++] = b;
    t.dtype = dt;
    t.data = b;
    t.nbytes = n * sizeof(uint16_t);
    return t;
}

static void join_ints(char *buf, size_t cap, const int *v, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? "," : "", v[i]);
}

static void join_floats(char *buf, size_t cap, const float *v, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%g", i ? "," : "", v[i]);
}

mq_status mq_checkpoint_can_write(const char *dir) {
    if (mq_file_exists(dir))
        return mq_fail(MQ_ERR_IO, "%s: exists and is a file; give a directory name for the checkpoint", dir);
    if (mq_is_dir(dir) && !mq_checkpoint_detect(dir)) {
        DIR *d = opendir(dir);
        int entries = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d) closedir(d);
        if (entries)
            return mq_fail(MQ_ERR_IO, "%s: exists and is not a matquant checkpoint; refusing to replace it", dir);
    }
    return MQ_OK;
}

mq_status mq_checkpoint_write(const char *dir, const mq_model *m, const mq_qlinear *q, int n,
                              const mq_qmeta *meta) {
    const mq_config *c = &m->cfg;
    mq_status cst = mq_checkpoint_can_write(dir);
    if (cst) return cst;
    size_t plen = strlen(dir) + 32;
    char *tmp = mq_malloc(plen), *old = mq_malloc(plen);
    snprintf(tmp, plen, "%s.tmp.%ld", dir, (long)getpid());
    snprintf(old, plen, "%s.old.%ld", dir, (long)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        mq_status st = mq_fail(MQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(old);
        return st;
    }
    /* tensors: every source tensor, with quantized linears replaced */
    int L = c->n_layers, cap = 4 + L * 32, nt = 0;
    mq_tensor *t = mq_calloc((size_t)cap, sizeof *t);
    char (*names)[128] = mq_calloc((size_t)cap, sizeof *names);
    const mq_qlinear **ql = mq_calloc((size_t)L * MQ_LIN_COUNT, sizeof *ql);
    for (int i = 0; i < n; i++) ql[q[i].layer * MQ_LIN_COUNT + q[i].kind] = &q[i];
    tmp_bufs tb = {0};
#define ADD_W(nm, data, h, r, cl) \
    do { snprintf(names[nt], sizeof names[nt], "%s", (nm)); t[nt] = src_tensor(m, names[nt], (data), (h), (r), (cl), &tb); nt++; } while (0)
#define ADD_F32(nm, data, r, cl) ADD_W(nm, data, NULL, r, cl)
    ADD_W("model.embed_tokens.weight", m->tok_emb, m->tok_half, c->vocab_size, c->dim);
    char nm[128], base[96];
    for (int l = 0; l < L; l++) {
        const mq_layer *ly = &m->layers[l];
        int QD = c->n_heads * c->head_dim, KD = c->n_kv_heads * c->head_dim;
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        ADD_F32(nm, ly->attn_norm, c->dim, 0);
        if (c->post_norms) {
            snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
            ADD_F32(nm, ly->post_attn_norm, c->dim, 0);
            snprintf(nm, sizeof nm, "model.layers.%d.pre_feedforward_layernorm.weight", l);
            ADD_F32(nm, ly->ffn_norm, c->dim, 0);
            snprintf(nm, sizeof nm, "model.layers.%d.post_feedforward_layernorm.weight", l);
            ADD_F32(nm, ly->post_ffn_norm, c->dim, 0);
        } else {
            snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
            ADD_F32(nm, ly->ffn_norm, c->dim, 0);
        }
        if (c->qkv_bias) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.bias", l);
            ADD_F32(nm, ly->bq, QD, 0);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.bias", l);
            ADD_F32(nm, ly->bk, KD, 0);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_proj.bias", l);
            ADD_F32(nm, ly->bv, KD, 0);
        }
        for (int k = 0; k < MQ_LIN_COUNT; k++) {
            mq_linear_name(l, (mq_lin_kind)k, base, sizeof base);
            const mq_qlinear *qq = ql[l * MQ_LIN_COUNT + k];
            if (!qq) {
                int rows, cols;
                float *w = mq_linear_weight(m, l, (mq_lin_kind)k, &rows, &cols);
                snprintf(nm, sizeof nm, "%s.weight", base);
                ADD_W(nm, w, ly->half[k], rows, cols);
                continue;
            }
            int ng = qq->cols / qq->group;
            snprintf(names[nt], sizeof names[nt], "%s.qweight", base);
            t[nt] = (mq_tensor){.name = names[nt], .dtype = MQ_DTYPE_U8, .ndim = 2,
                                .shape = {qq->rows, qq->cols}, .data = qq->q,
                                .nbytes = (size_t)qq->rows * qq->cols};
            nt++;
            snprintf(names[nt], sizeof names[nt], "%s.scale", base);
            t[nt] = (mq_tensor){.name = names[nt], .dtype = MQ_DTYPE_F32, .ndim = 2,
                                .shape = {qq->rows, ng}, .data = qq->scale,
                                .nbytes = (size_t)qq->rows * ng * sizeof(float)};
            nt++;
            snprintf(names[nt], sizeof names[nt], "%s.zero", base);
            t[nt] = (mq_tensor){.name = names[nt], .dtype = MQ_DTYPE_U8, .ndim = 2,
                                .shape = {qq->rows, ng}, .data = qq->zero,
                                .nbytes = (size_t)qq->rows * ng};
            nt++;
        }
    }
    ADD_F32("model.norm.weight", m->final_norm, c->dim, 0);
    if (!c->tied_embeddings) ADD_W("lm_head.weight", m->lm_head, m->head_half, c->vocab_size, c->dim);
#undef ADD_F32
#undef ADD_W
    MQ_ASSERT(nt <= cap);
    char v_fmt[16], v_pb[16], v_gs[16], v_tb[64], v_lam[128], v_gb[16];
    snprintf(v_gb, sizeof v_gb, "%d", meta->grid_bits > 0 ? meta->grid_bits : 8);
    snprintf(v_fmt, sizeof v_fmt, "%d", meta->format_version);
    snprintf(v_pb, sizeof v_pb, "%d", meta->parent_bits);
    snprintf(v_gs, sizeof v_gs, "%d", meta->group_size);
    join_ints(v_tb, sizeof v_tb, meta->train_bits, meta->n_train);
    join_floats(v_lam, sizeof v_lam, meta->lambda, meta->n_train);
    mq_kv kv[] = {
        {"format", "pt"},
        {"matquant.format_version", v_fmt},
        {"matquant.parent_bits", v_pb},
        {"matquant.group_size", v_gs},
        {"matquant.grid_bits", v_gb},
        {"matquant.scope", meta->scope},
        {"matquant.method", meta->method},
        {"matquant.train_bits", v_tb},
        {"matquant.lambdas", v_lam},
        {"matquant.slicing", "round-half-up-clamp"},
        {"matquant.calibration", meta->calibration},
        {"matquant.source", meta->source},
    };
    char *p = mq_path_join(tmp, "model.safetensors");
    mq_status st = mq_st_write(p, t, nt, kv, (int)(sizeof kv / sizeof kv[0]));
    for (int i = 0; i < tb.n; i++) free(tb.p[i]);
    free(tb.p);
    free(p);
    free(t);
    free(names);
    free(ql);
    if (st == MQ_OK) {
        char *cfg = mq_config_to_json(c);
        p = mq_path_join(tmp, "config.json");
        st = mq_write_file_atomic(p, cfg, strlen(cfg));
        free(p);
        free(cfg);
    }
    if (st == MQ_OK) st = write_tokenizer(tmp, m);
    if (st == MQ_OK) {
        /* swap in: an existing checkpoint is moved aside first, then removed */
        bool had = mq_is_dir(dir);
        if (had && rename(dir, old) != 0)
            st = mq_fail(MQ_ERR_IO, "%s: cannot move the old checkpoint aside: %s", dir, strerror(errno));
        else if (rename(tmp, dir) != 0)
            st = mq_fail(MQ_ERR_IO, "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
        if (st == MQ_OK && had) remove_tree(old);
    }
    if (st) remove_tree(tmp);
    free(tmp);
    free(old);
    return st;
}

/* ============================================================== reading */

bool mq_checkpoint_detect(const char *dir) {
    char *p = mq_path_join(dir, "model.safetensors");
    mq_st_file *f = NULL;
    bool yes = mq_file_exists(p) && mq_st_open(p, &f) == MQ_OK &&
               mq_st_meta(f, "matquant.format_version") != NULL;
    if (f) mq_st_close(f);
    free(p);
    return yes;
}

static int parse_list(const char *s, int *ints, float *floats, int cap) {
    int n = 0;
    while (s && *s && n < cap) {
        char *end;
        double v = strtod(s, &end);
        if (end == s) return -1;
        if (ints) ints[n] = (int)v;
        if (floats) floats[n] = (float)v;
        n++;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static bool parse_linear_name(const char *name, int *layer, mq_lin_kind *kind) {
    int l, off = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &off) != 1 || off == 0 || l < 0) return false;
    const char *rest = name + off;
    for (int k = 0; k < MQ_LIN_COUNT; k++) {
        size_t n = strlen(lin_suffix[k]);
        if (!strncmp(rest, lin_suffix[k], n) && !strcmp(rest + n, ".qweight")) {
            *layer = l;
            *kind = (mq_lin_kind)k;
            return true;
        }
    }
    return false;
}

void mq_qlinears_free(mq_qlinear *q, int n) {
    for (int i = 0; i < n; i++) {
        free(q[i].q);
        free(q[i].scale);
        free(q[i].zero);
    }
    free(q);
}

mq_status mq_checkpoint_read(const char *dir, mq_qlinear **out, int *nout, mq_qmeta *meta) {
    *out = NULL;
    *nout = 0;
    memset(meta, 0, sizeof *meta);
    char *p = mq_path_join(dir, "model.safetensors");
    mq_st_file *f = NULL;
    mq_status st = mq_st_open(p, &f);
    if (st) {
        free(p);
        return st;
    }
    const char *v = mq_st_meta(f, "matquant.format_version");
    const char *pb = mq_st_meta(f, "matquant.parent_bits");
    if (!v || atoi(v) != 1) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: matquant.format_version is %s%s%s, this build reads 1", p,
                     v ? "\"" : "", v ? v : "missing", v ? "\"" : "");
        goto done;
    }
    if (!pb || atoi(pb) != 8) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: matquant.parent_bits must be 8", p);
        goto done;
    }
    meta->format_version = 1;
    meta->parent_bits = 8;
    const char *gb = mq_st_meta(f, "matquant.grid_bits");
    meta->grid_bits = gb ? atoi(gb) : 8;
    if (meta->grid_bits < 1 || meta->grid_bits > 8) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: matquant.grid_bits must be 1..8", p);
        goto done;
    }
    const char *gs = mq_st_meta(f, "matquant.group_size");
    meta->group_size = gs ? atoi(gs) : 0;
    const char *s;
    if ((s = mq_st_meta(f, "matquant.scope"))) snprintf(meta->scope, sizeof meta->scope, "%s", s);
    if ((s = mq_st_meta(f, "matquant.method"))) snprintf(meta->method, sizeof meta->method, "%s", s);
    if ((s = mq_st_meta(f, "matquant.calibration"))) snprintf(meta->calibration, sizeof meta->calibration, "%s", s);
    if ((s = mq_st_meta(f, "matquant.source"))) snprintf(meta->source, sizeof meta->source, "%s", s);
    meta->n_train = parse_list(mq_st_meta(f, "matquant.train_bits"), meta->train_bits, NULL, 8);
    int nl = parse_list(mq_st_meta(f, "matquant.lambdas"), NULL, meta->lambda, 8);
    if (meta->n_train < 1 || nl != meta->n_train) {
        st = mq_fail(MQ_ERR_FORMAT, "%s: matquant.train_bits and matquant.lambdas are malformed, empty or of "
                     "different lengths", p);
        goto done;
    }
    int cap = 0, n = 0;
    mq_qlinear *q = NULL;
    for (int i = 0; i < mq_st_count(f) && st == MQ_OK; i++) {
        const mq_tensor *t = mq_st_at(f, i);
        int layer;
        mq_lin_kind kind;
        if (!mq_has_suffix(t->name, ".qweight")) continue;
        if (!parse_linear_name(t->name, &layer, &kind)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: '%s' is not the name of a linear layer", p, t->name);
            break;
        }
        char base[160], nm[180];
        size_t bl = strlen(t->name) - strlen(".qweight");
        snprintf(base, sizeof base, "%.*s", (int)bl, t->name);
        snprintf(nm, sizeof nm, "%s.scale", base);
        const mq_tensor *sc = mq_st_find(f, nm);
        snprintf(nm, sizeof nm, "%s.zero", base);
        const mq_tensor *zr = mq_st_find(f, nm);
        if (t->dtype != MQ_DTYPE_U8 || t->ndim != 2 || !sc || !zr || sc->dtype != MQ_DTYPE_F32 ||
            zr->dtype != MQ_DTYPE_U8 || sc->ndim != 2 || zr->ndim != 2) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: '%s' needs U8 [out, in] codes with F32 .scale and U8 .zero "
                         "[out, in/g] beside it", p, t->name);
            break;
        }
        int64_t rows = t->shape[0], cols = t->shape[1], ng = sc->shape[1];
        if (sc->shape[0] != rows || zr->shape[0] != rows || zr->shape[1] != ng || ng <= 0 || cols % ng ||
            rows <= 0 || rows > (1 << 24) || cols > (1 << 24)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: '%s' [%lld, %lld] disagrees with its scale [%lld, %lld] / zero "
                         "[%lld, %lld] (in/g groups)", p, t->name, (long long)rows, (long long)cols,
                         (long long)sc->shape[0], (long long)sc->shape[1], (long long)zr->shape[0],
                         (long long)zr->shape[1]);
            break;
        }
        int group = (int)(cols / ng);
        if (meta->group_size > 0 ? group != meta->group_size : ng != 1) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: '%s' has groups of %d columns but matquant.group_size is %d",
                         p, t->name, group, meta->group_size);
            break;
        }
        const float *scv = sc->data;
        for (int64_t k = 0; k < rows * ng; k++)
            if (!(scv[k] >= 0) || !isfinite(scv[k])) {
                st = mq_fail(MQ_ERR_FORMAT, "%s: '%s.scale' element %lld is %g (must be finite and >= 0)",
                             p, base, (long long)k, scv[k]);
                break;
            }
        if (st) break;
        if (n == cap) q = mq_realloc(q, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *q);
        mq_qlinear *x = &q[n++];
        *x = (mq_qlinear){.layer = layer, .kind = kind, .rows = (int)rows, .cols = (int)cols, .group = group};
        x->q = mq_malloc((size_t)(rows * cols));
        memcpy(x->q, t->data, (size_t)(rows * cols));
        x->scale = mq_malloc((size_t)(rows * ng) * sizeof(float));
        memcpy(x->scale, sc->data, (size_t)(rows * ng) * sizeof(float));
        x->zero = mq_malloc((size_t)(rows * ng));
        memcpy(x->zero, zr->data, (size_t)(rows * ng));
    }
    if (st) {
        mq_qlinears_free(q, n);
    } else {
        *out = q;
        *nout = n;
    }
done:
    mq_st_close(f);
    free(p);
    return st;
}
