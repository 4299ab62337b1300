/*
 * plan.c — parsing, printing and bit accounting of bit plans (grammar in
 * plan.h, normative in docs/format.md §4).
 *
 * Not here: applying a plan (quant/qmodel.c) or the slice arithmetic
 * (quant/ref.c, whose bit counts this file sums).
 * References: MatQuant §5 (Mix'n'Match: per-layer widths from one model).
 */
#include "quant/plan.h"

#include "quant/ref.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <string.h>

/* ================================================================ basics */

void mq_plan_free(mq_plan *p) {
    free(p->bits);
    free(p->extra);
    p->bits = NULL;
    p->extra = NULL;
}

void mq_plans_free(mq_plan *p, int n) {
    for (int i = 0; i < n; i++) mq_plan_free(&p[i]);
    free(p);
}

static void plan_alloc(mq_plan *p, int n_layers) {
    memset(p, 0, sizeof *p);
    p->n_layers = n_layers;
    p->bits = mq_calloc((size_t)(n_layers ? n_layers : 1), 1);
    p->extra = mq_calloc((size_t)(n_layers ? n_layers : 1), sizeof(bool));
}

/* p->text from mq_plan_format, marked when it does not fit */
static void set_text(mq_plan *p) {
    size_t n = mq_plan_format(p, p->text, sizeof p->text);
    if (n >= sizeof p->text) memcpy(p->text + sizeof p->text - 4, "...", 4);
}

void mq_plan_uniform(int n_layers, int r, bool extra, mq_plan *out) {
    MQ_ASSERT(r >= 1 && r <= 8 && !(extra && r == 8));
    plan_alloc(out, n_layers);
    for (int l = 0; l < n_layers; l++) {
        out->bits[l] = (uint8_t)r;
        out->extra[l] = extra;
    }
    set_text(out);
}

size_t mq_plan_format(const mq_plan *p, char *buf, size_t cap) {
    size_t k = 0;
#define PUT(...)                                                                       \
    do {                                                                               \
        size_t room = k < cap ? cap - k : 0;                                           \
        k += (size_t)snprintf(room ? buf + k : NULL, room, __VA_ARGS__);               \
    } while (0)
    if (cap) buf[0] = 0;
    bool same = true;
    for (int l = 1; l < p->n_layers; l++) same &= p->bits[l] == p->bits[0] && p->extra[l] == p->extra[0];
    if (same && p->n_layers > 0) {
        PUT("%d%s", p->bits[0], p->extra[0] ? "x" : "");
    } else {
        for (int a = 0; a < p->n_layers;) {
            int b = a;
            while (b + 1 < p->n_layers && p->bits[b + 1] == p->bits[a] && p->extra[b + 1] == p->extra[a]) b++;
            if (a == b) PUT("%s%d:%d%s", a ? "," : "", a, p->bits[a], p->extra[a] ? "x" : "");
            else PUT("%s%d-%d:%d%s", a ? "," : "", a, b, p->bits[a], p->extra[a] ? "x" : "");
            a = b + 1;
        }
    }
    if (p->head_bits) PUT(",head:%d", p->head_bits);
#undef PUT
    return k;
}

/* ================================================================ tokens */

static void trim(const char **s, size_t *n) {
    while (*n && isspace((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

/* "4" or "2x" -> width and extra flag ("8x" is not a width: 8 never overflows) */
static bool parse_width(const char *s, size_t n, int *r, bool *extra) {
    trim(&s, &n);
    *extra = n >= 2 && (s[n - 1] == 'x' || s[n - 1] == 'X');
    if (*extra) n--;
    if (n != 1 || s[0] < '1' || s[0] > '8') return false;
    *r = s[0] - '0';
    return !(*extra && *r == 8);
}

/* "A-B" or "A" -> range. 0 ok, 1 malformed, 2 reversed (B < A). */
static int parse_range(const char *s, size_t n, int *a, int *b) {
    trim(&s, &n);
    long v[2] = {0, 0};
    int k = 0;
    size_t i = 0;
    for (; k < 2; k++) {
        if (i >= n || !isdigit((unsigned char)s[i])) return 1;
        for (; i < n && isdigit((unsigned char)s[i]); i++) {
            v[k] = v[k] * 10 + (s[i] - '0');
            if (v[k] > 1000000) return 1;
        }
        if (i == n) break;
        if (k == 1 || s[i] != '-') return 1;
        i++;
    }
    if (k == 0) v[1] = v[0];
    *a = (int)v[0];
    *b = (int)v[1];
    return v[1] < v[0] ? 2 : 0;
}

/* ============================================================== building */

typedef struct {
    mq_plan *p;
    int *owner;        /* (n_layers) 1 + index of the entry that set the layer; 0 unset */
    const char **ent;  /* (cap) entry text (for messages) */
    int *ent_len;
    int n_ent, cap;
    const char *src;   /* the plan string or the JSON path */
    mq_status kind;    /* MQ_ERR_ARG for strings, MQ_ERR_FORMAT for files */
} builder;

static void builder_init(builder *b, mq_plan *p, int n_layers, const char *src, mq_status kind) {
    plan_alloc(p, n_layers);
    *b = (builder){.p = p, .src = src, .kind = kind};
    b->owner = mq_calloc((size_t)n_layers, sizeof(int));
}

static void builder_free(builder *b) {
    free(b->owner);
    free(b->ent);
    free(b->ent_len);
}

/* layers a..b get width r (entry text e, n bytes): overlap and range errors */
static mq_status assign(builder *B, int a, int b, int r, bool x, const char *e, int n) {
    mq_plan *p = B->p;
    if (b >= p->n_layers)
        return mq_fail(B->kind, "bit plan '%s': '%.*s' names layer %d but the model has %d layers (0-%d)", B->src, n,
                       e, b, p->n_layers, p->n_layers - 1);
    if (B->n_ent == B->cap) {
        B->cap = B->cap ? 2 * B->cap : 16;
        B->ent = mq_realloc(B->ent, (size_t)B->cap * sizeof *B->ent);
        B->ent_len = mq_realloc(B->ent_len, (size_t)B->cap * sizeof *B->ent_len);
    }
    B->ent[B->n_ent] = e;
    B->ent_len[B->n_ent] = n;
    B->n_ent++;
    for (int l = a; l <= b; l++) {
        if (!B->owner[l]) continue;
        int l1 = l, o = B->owner[l] - 1;
        while (l1 + 1 <= b && B->owner[l1 + 1]) l1++;
        if (l1 == l)
            return mq_fail(B->kind, "bit plan '%s': layer %d is given twice ('%.*s' and '%.*s')", B->src, l,
                           B->ent_len[o], B->ent[o], n, e);
        return mq_fail(B->kind, "bit plan '%s': layers %d-%d are given twice ('%.*s' and '%.*s')", B->src, l, l1,
                       B->ent_len[o], B->ent[o], n, e);
    }
    for (int l = a; l <= b; l++) {
        B->owner[l] = B->n_ent;
        p->bits[l] = (uint8_t)r;
        p->extra[l] = x;
    }
    return MQ_OK;
}

/* unset layers take the default, or are an error naming the first gap */
static mq_status fill_default(builder *B, bool has_def, int r, bool x, const char *why) {
    mq_plan *p = B->p;
    for (int l = 0; l < p->n_layers; l++) {
        if (B->owner[l]) continue;
        if (has_def) {
            p->bits[l] = (uint8_t)r;
            p->extra[l] = x;
            continue;
        }
        int b = l;
        while (b + 1 < p->n_layers && !B->owner[b + 1]) b++;
        if (b == l) return mq_fail(B->kind, "bit plan '%s': layer %d has no width%s", B->src, l, why);
        return mq_fail(B->kind, "bit plan '%s': layers %d-%d have no width%s", B->src, l, b, why);
    }
    return MQ_OK;
}

/* =========================================================== string form */

static mq_status parse_layers(const char *s, mq_plan *p) {
    builder B;
    builder_init(&B, p, p->n_layers, s, MQ_ERR_ARG);
    mq_status st = MQ_OK;
    bool has_def = false;
    int dr = 0;
    bool dx = false;
    for (const char *e = s; !st;) {
        const char *comma = strchr(e, ',');
        size_t n = comma ? (size_t)(comma - e) : strlen(e);
        const char *t = e;
        trim(&t, &n);
        const char *colon = memchr(t, ':', n);
        int r, a, b;
        bool x;
        if (n == 0) {
            st = mq_fail(MQ_ERR_ARG, "bit plan '%s': empty entry", s);
        } else if (!colon) {
            if (!parse_width(t, n, &r, &x))
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': entry '%.*s' is neither LAYERS:WIDTH nor a default width "
                             "(1..8 or rx)", s, (int)n, t);
            else if (has_def)
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': a default width is given twice ('%.*s')", s, (int)n, t);
            else
                has_def = true, dr = r, dx = x;
        } else {
            size_t kl = (size_t)(colon - t), wl = n - kl - 1;
            const char *k = t;
            trim(&k, &kl);
            int pr = parse_range(k, kl, &a, &b);
            if (kl == 4 && !strncmp(k, "head", 4)) {
                if (!parse_width(colon + 1, wl, &r, &x) || r != 8 || x)
                    st = mq_fail(MQ_ERR_ARG, "bit plan '%s': the head can only be served at 8 bits (head:8), not "
                                 "'%.*s'", s, (int)n, t);
                else if (p->head_bits)
                    st = mq_fail(MQ_ERR_ARG, "bit plan '%s': head is given twice", s);
                else
                    p->head_bits = 8;
            } else if (pr == 1) {
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': '%.*s' is not a layer N or range A-B (in '%.*s')", s,
                             (int)kl, k, (int)n, t);
            } else if (pr == 2) {
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': range '%.*s' is reversed (write %d-%d)", s, (int)kl, k, b, a);
            } else if (!parse_width(colon + 1, wl, &r, &x)) {
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': entry '%.*s' has no valid width (1..8 or rx)", s, (int)n, t);
            } else {
                st = assign(&B, a, b, r, x, t, (int)n);
            }
        }
        if (!comma) break;
        e = comma + 1;
    }
    if (!st) st = fill_default(&B, has_def, dr, dx, "");
    builder_free(&B);
    return st;
}

/* ============================================================= JSON form */

static bool json_width(const cJSON *v, int *r, bool *x) {
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= 1 && d <= 8) || d != floor(d)) return false;
        *r = (int)d;
        *x = false;
        return true;
    }
    return cJSON_IsString(v) && parse_width(v->valuestring, strlen(v->valuestring), r, x);
}

static mq_status parse_json(const char *path, mq_plan *p) {
    char *text;
    size_t len;
    int n_layers = p->n_layers;
    mq_status st = mq_read_file(path, &text, &len);
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_FORMAT, "%s: bit plan file is not a JSON object", path);
    }
    builder B;
    builder_init(&B, p, n_layers, path, MQ_ERR_FORMAT);
    const cJSON *def = NULL, *layers = NULL, *head = NULL, *e;
    cJSON_ArrayForEach(e, j) {
        const cJSON **slot = !strcmp(e->string, "default") ? &def
                           : !strcmp(e->string, "layers") ? &layers
                           : !strcmp(e->string, "head")   ? &head : NULL;
        if (!slot) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: unknown key \"%s\" in a bit plan (expected default, layers, head)", path,
                         e->string);
            break;
        }
        if (*slot) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: key \"%s\" is given twice", path, e->string);
            break;
        }
        *slot = e;
    }
    int dr = 0;
    bool dx = false;
    if (!st && def && !json_width(def, &dr, &dx))
        st = mq_fail(MQ_ERR_FORMAT, "%s: \"default\" must be a width 1..8 or \"rx\"", path);
    if (!st && layers && !cJSON_IsObject(layers))
        st = mq_fail(MQ_ERR_FORMAT, "%s: \"layers\" must be an object of \"A-B\": width", path);
    if (!st && layers) cJSON_ArrayForEach(e, layers) {
        int a, b, r;
        bool x;
        int pr = parse_range(e->string, strlen(e->string), &a, &b);
        if (pr == 1) st = mq_fail(MQ_ERR_FORMAT, "%s: layer range \"%s\" is not N or A-B", path, e->string);
        else if (pr == 2) st = mq_fail(MQ_ERR_FORMAT, "%s: layer range \"%s\" is reversed", path, e->string);
        else if (!json_width(e, &r, &x))
            st = mq_fail(MQ_ERR_FORMAT, "%s: layers \"%s\": width must be 1..8 or \"rx\"", path, e->string);
        else st = assign(&B, a, b, r, x, e->string, (int)strlen(e->string));
        if (st) break;
    }
    if (!st) st = fill_default(&B, def != NULL, dr, dx, " and there is no \"default\"");
    if (!st && head) {
        if (!cJSON_IsNumber(head) || (head->valuedouble != 8 && head->valuedouble != 0))
            st = mq_fail(MQ_ERR_FORMAT, "%s: \"head\" must be 8 (int8) or 0 (unquantized)", path);
        else
            p->head_bits = (int)head->valuedouble;
    }
    builder_free(&B);
    cJSON_Delete(j);
    return st;
}

/* ================================================================ public */

mq_status mq_plan_parse(const char *s, int n_layers, mq_plan *p) {
    memset(p, 0, sizeof *p);
    if (n_layers <= 0) return mq_fail(MQ_ERR_ARG, "bit plan '%s': the model has no layers", s);
    mq_status st;
    if (mq_has_suffix(s, ".json")) {
        p->n_layers = n_layers;
        st = parse_json(s, p);
    } else if (!strchr(s, ':')) {
        int r;
        bool x;
        if (!parse_width(s, strlen(s), &r, &x))
            return mq_fail(MQ_ERR_ARG, "bit plan '%s': expected a width 1..8, 'rx' for extra precision "
                           "(e.g. 2x), ranges like 0-5:2,6-23:4, or a .json file", s);
        mq_plan_uniform(n_layers, r, x, p);
        return MQ_OK;
    } else {
        p->n_layers = n_layers;
        st = parse_layers(s, p);
    }
    if (st) {
        mq_plan_free(p);
        memset(p, 0, sizeof *p);
        return st;
    }
    set_text(p);
    return MQ_OK;
}

mq_status mq_plan_list_parse(const char *s, int n_layers, mq_plan **plans, int *n) {
    *plans = NULL;
    *n = 0;
    char sep = strchr(s, ';') || strchr(s, ':') ? ';' : ',';
    int cap = 1;
    for (const char *c = s; *c; c++) cap += *c == sep;
    mq_plan *p = mq_calloc((size_t)cap, sizeof *p);
    int k = 0;
    mq_status st = MQ_OK;
    for (const char *e = s; !st;) {
        const char *d = strchr(e, sep);
        size_t len = d ? (size_t)(d - e) : strlen(e);
        const char *t = e;
        size_t tl = len;
        trim(&t, &tl);
        if (tl) {
            char *one = mq_malloc(tl + 1);
            memcpy(one, t, tl);
            one[tl] = 0;
            st = mq_plan_parse(one, n_layers, &p[k]);
            if (!st) k++;
            free(one);
        }
        if (!d) break;
        e = d + 1;
    }
    if (!st && k == 0) st = mq_fail(MQ_ERR_ARG, "bit plan list '%s' is empty", s);
    if (st) {
        mq_plans_free(p, k);
        return st;
    }
    *plans = p;
    *n = k;
    return MQ_OK;
}

mq_status mq_plan_bits(const mq_plan *p, const mq_plan_tensor *t, int n, double *eff, double *storage) {
    double e = 0, s = 0, tot = 0;
    *eff = *storage = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].layer < -1 || t[i].layer >= p->n_layers)
            return mq_fail(MQ_ERR_ARG, "bit accounting: tensor %d is in layer %d, the plan has layers 0-%d", i,
                           t[i].layer, p->n_layers - 1);
        if (t[i].numel < 0) return mq_fail(MQ_ERR_ARG, "bit accounting: tensor %d has %lld elements", i,
                                           (long long)t[i].numel);
        int r = 8;
        bool x = false;
        if (t[i].layer < 0) {
            if (p->head_bits != 8) continue; /* the head stays in its source dtype */
        } else {
            r = p->bits[t[i].layer];
            x = p->extra[t[i].layer];
        }
        int64_t over = x ? t[i].n_over[r] : 0;
        if (over < 0 || over > t[i].numel)
            return mq_fail(MQ_ERR_ARG, "bit accounting: tensor %d has %lld overflow weights at %d bits among %lld", i,
                           (long long)over, r, (long long)t[i].numel);
        e += mq_ref_effective_bits(r, x, over, t[i].numel) * (double)t[i].numel;
        s += mq_ref_storage_bits(r, x, over, t[i].numel) * (double)t[i].numel;
        tot += (double)t[i].numel;
    }
    if (tot > 0) {
        *eff = e / tot;
        *storage = s / tot;
    }
    return MQ_OK;
}
