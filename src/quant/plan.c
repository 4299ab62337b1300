/*
 * plan.c — parsing bit plans (see plan.h for the grammar).
 */
#include "quant/plan.h"

#include <cJSON.h>
#include <ctype.h>
#include <string.h>

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

void mq_plan_uniform(int n_layers, int r, bool extra, mq_plan *out) {
    plan_alloc(out, n_layers);
    for (int l = 0; l < n_layers; l++) {
        out->bits[l] = (uint8_t)r;
        out->extra[l] = extra;
    }
    snprintf(out->text, sizeof out->text, "%d%s", r, extra ? "x" : "");
}

/* "4" or "2x" -> width and extra flag */
static bool parse_width(const char *s, size_t n, int *r, bool *extra) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    *extra = n >= 2 && (s[n - 1] == 'x' || s[n - 1] == 'X');
    if (*extra) n--;
    if (n != 1 || s[0] < '1' || s[0] > '8') return false;
    *r = s[0] - '0';
    return !(*extra && *r == 8);
}

/* canonical text: runs of equal widths as ranges */
static void canonical(mq_plan *p, bool uniform_ok) {
    size_t k = 0;
    bool same = true;
    for (int l = 1; l < p->n_layers; l++) same &= p->bits[l] == p->bits[0] && p->extra[l] == p->extra[0];
    if (same && uniform_ok && p->n_layers > 0) {
        k = (size_t)snprintf(p->text, sizeof p->text, "%d%s", p->bits[0], p->extra[0] ? "x" : "");
    } else {
        for (int a = 0; a < p->n_layers && k < sizeof p->text;) {
            int b = a;
            while (b + 1 < p->n_layers && p->bits[b + 1] == p->bits[a] && p->extra[b + 1] == p->extra[a]) b++;
            k += (size_t)(a == b ? snprintf(p->text + k, sizeof p->text - k, "%s%d:%d%s", a ? "," : "", a,
                                            p->bits[a], p->extra[a] ? "x" : "")
                                 : snprintf(p->text + k, sizeof p->text - k, "%s%d-%d:%d%s", a ? "," : "", a, b,
                                            p->bits[a], p->extra[a] ? "x" : ""));
            a = b + 1;
        }
    }
    if (p->head_bits && k < sizeof p->text) snprintf(p->text + k, sizeof p->text - k, ",head:%d", p->head_bits);
}

/* "A-B" or "A" -> range; false if malformed */
static bool parse_range(const char *s, size_t n, int *a, int *b) {
    char buf[32];
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    long x = strtol(buf, &end, 10), y = x;
    if (end == buf) return false;
    if (*end == '-') {
        char *e2;
        y = strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || *e2) return false;
    } else if (*end) {
        return false;
    }
    if (x < 0 || y < x || y > 1000000) return false;
    *a = (int)x;
    *b = (int)y;
    return true;
}

static mq_status assign(mq_plan *p, int *owner, int a, int b, int r, bool extra, const char *src, const char *what) {
    if (b >= p->n_layers)
        return mq_fail(MQ_ERR_ARG, "bit plan '%s': %s names layer %d but the model has %d layers (0-%d)", src,
                       what, b, p->n_layers, p->n_layers - 1);
    for (int l = a; l <= b; l++) {
        if (owner[l])
            return mq_fail(MQ_ERR_ARG, "bit plan '%s': layer %d is given twice", src, l);
        owner[l] = 1;
        p->bits[l] = (uint8_t)r;
        p->extra[l] = extra;
    }
    return MQ_OK;
}

static mq_status parse_json(const char *path, int n_layers, mq_plan *p) {
    char *text;
    size_t len;
    mq_status st = mq_read_file(path, &text, &len);
    if (st) return st;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return mq_fail(MQ_ERR_FORMAT, "%s: bit plan file is not a JSON object", path);
    }
    plan_alloc(p, n_layers);
    int *owner = mq_calloc((size_t)(n_layers ? n_layers : 1), sizeof(int));
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(j, "default");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(j, "head");
    char wbuf[16];
    int dr = 0;
    bool dx = false;
#define WIDTH_OF(item, r, x, ok)                                                          \
    do {                                                                                  \
        if (cJSON_IsNumber(item)) snprintf(wbuf, sizeof wbuf, "%d", (item)->valueint);    \
        else if (cJSON_IsString(item)) snprintf(wbuf, sizeof wbuf, "%s", (item)->valuestring); \
        else wbuf[0] = 0;                                                                 \
        ok = parse_width(wbuf, strlen(wbuf), &(r), &(x));                                 \
    } while (0)
    bool ok = true;
    if (def) {
        WIDTH_OF(def, dr, dx, ok);
        if (!ok) st = mq_fail(MQ_ERR_FORMAT, "%s: \"default\" must be a width 1..8 or \"rx\"", path);
    }
    const cJSON *e;
    if (!st && layers && !cJSON_IsObject(layers)) st = mq_fail(MQ_ERR_FORMAT, "%s: \"layers\" must be an object", path);
    if (!st && layers) cJSON_ArrayForEach(e, layers) {
        int a, b, r;
        bool x;
        if (!parse_range(e->string, strlen(e->string), &a, &b)) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: layer range \"%s\" is not N or A-B", path, e->string);
            break;
        }
        WIDTH_OF(e, r, x, ok);
        if (!ok) {
            st = mq_fail(MQ_ERR_FORMAT, "%s: layers \"%s\": width must be 1..8 or \"rx\"", path, e->string);
            break;
        }
        if ((st = assign(p, owner, a, b, r, x, path, e->string))) break;
    }
#undef WIDTH_OF
    for (int l = 0; l < n_layers && !st; l++)
        if (!owner[l]) {
            if (!def) st = mq_fail(MQ_ERR_FORMAT, "%s: layer %d has no width and there is no \"default\"", path, l);
            p->bits[l] = (uint8_t)dr;
            p->extra[l] = dx;
        }
    if (!st && head) {
        if (!cJSON_IsNumber(head) || (head->valueint != 8 && head->valueint != 0))
            st = mq_fail(MQ_ERR_FORMAT, "%s: \"head\" must be 8 (int8) or 0 (unquantized)", path);
        else
            p->head_bits = head->valueint;
    }
    free(owner);
    cJSON_Delete(j);
    if (st) {
        mq_plan_free(p);
        return st;
    }
    canonical(p, true);
    return MQ_OK;
}

mq_status mq_plan_parse(const char *s, int n_layers, mq_plan *p) {
    memset(p, 0, sizeof *p);
    if (n_layers <= 0) return mq_fail(MQ_ERR_ARG, "bit plan: the model has no layers");
    if (mq_has_suffix(s, ".json")) return parse_json(s, n_layers, p);
    int r;
    bool x;
    if (!strchr(s, ':')) {
        if (!parse_width(s, strlen(s), &r, &x))
            return mq_fail(MQ_ERR_ARG, "bit plan '%s': expected a width 1..8, 'rx' for extra precision "
                           "(e.g. 2x), ranges like 0-5:2,6-23:4, or a .json file", s);
        mq_plan_uniform(n_layers, r, x, p);
        return MQ_OK;
    }
    plan_alloc(p, n_layers);
    int *owner = mq_calloc((size_t)n_layers, sizeof(int));
    mq_status st = MQ_OK;
    const char *e = s;
    while (*e && !st) {
        const char *comma = strchr(e, ',');
        size_t n = comma ? (size_t)(comma - e) : strlen(e);
        const char *colon = memchr(e, ':', n);
        char entry[64];
        snprintf(entry, sizeof entry, "%.*s", (int)(n < 63 ? n : 63), e);
        int a, b;
        if (!colon) {
            st = mq_fail(MQ_ERR_ARG, "bit plan '%s': entry '%s' needs the form LAYERS:WIDTH", s, entry);
        } else if ((size_t)(colon - e) == 4 && !strncmp(e, "head", 4)) {
            if (!parse_width(colon + 1, n - 5, &r, &x) || r != 8 || x)
                st = mq_fail(MQ_ERR_ARG, "bit plan '%s': the head can only be served at 8 bits (head:8)", s);
            else
                p->head_bits = 8;
        } else if (!parse_range(e, (size_t)(colon - e), &a, &b)) {
            st = mq_fail(MQ_ERR_ARG, "bit plan '%s': '%.*s' is not a layer N or range A-B", s, (int)(colon - e), e);
        } else if (!parse_width(colon + 1, n - (size_t)(colon - e) - 1, &r, &x)) {
            st = mq_fail(MQ_ERR_ARG, "bit plan '%s': entry '%s' has no valid width (1..8 or rx)", s, entry);
        } else {
            st = assign(p, owner, a, b, r, x, s, entry);
        }
        e = comma ? comma + 1 : e + n;
    }
    for (int l = 0; l < n_layers && !st; l++)
        if (!owner[l]) {
            int b = l;
            while (b + 1 < n_layers && !owner[b + 1]) b++;
            st = mq_fail(MQ_ERR_ARG, b == l ? "bit plan '%s': layer %d has no width" : "bit plan '%s': layers %d-%d have no width",
                         s, l, b);
        }
    free(owner);
    if (st) {
        mq_plan_free(p);
        return st;
    }
    canonical(p, true);
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
    const char *e = s;
    while (!st) {
        const char *d = strchr(e, sep);
        size_t len = d ? (size_t)(d - e) : strlen(e);
        char *one = mq_malloc(len + 1);
        memcpy(one, e, len);
        one[len] = 0;
        if (len) st = mq_plan_parse(one, n_layers, &p[k++]);
        if (st) k--;
        free(one);
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
