/*
 * test_bitplan.c — bit plan parsing (src/quant/plan.c): uniform widths,
 * extra precision, per-layer ranges, head:8, JSON files, lists, and every
 * malformed plan giving an error that names the problem.
 */
#include "check.h"
#include "quant/plan.h"

static void ok_plan(const char *s, int L, const char *canon, const char *widths) {
    mq_plan p;
    mq_status st = mq_plan_parse(s, L, &p);
    CHECK(st == MQ_OK, "'%s': %s", s, mq_last_error());
    if (st) return;
    CHECK(!strcmp(p.text, canon), "'%s' canonical '%s', want '%s'", s, p.text, canon);
    char got[128] = "";
    size_t k = 0;
    for (int l = 0; l < L; l++) k += (size_t)snprintf(got + k, sizeof got - k, "%d%s ", p.bits[l], p.extra[l] ? "x" : "");
    CHECK(!strcmp(got, widths), "'%s' widths '%s', want '%s'", s, got, widths);
    mq_plan_free(&p);
}

static void bad_plan(const char *s, int L, const char *msg) {
    mq_plan p;
    mq_status st = mq_plan_parse(s, L, &p);
    CHECK(st != MQ_OK && strstr(mq_last_error(), msg), "'%s' should fail with '%s', got %d '%s'", s, msg, st,
          mq_last_error());
}

int main(void) {
    ok_plan("4", 3, "4", "4 4 4 ");
    ok_plan("2x", 3, "2x", "2x 2x 2x ");
    ok_plan("0-1:2,2-4:4,5:2x", 6, "0-1:2,2-4:4,5:2x", "2 2 4 4 4 2x ");
    ok_plan("5:8,0-4:3", 6, "0-4:3,5:8", "3 3 3 3 3 8 ");
    ok_plan("0-2:4,head:8", 3, "4,head:8", "4 4 4 ");
    bad_plan("9", 3, "expected a width");
    bad_plan("8x", 3, "expected a width");
    bad_plan("0", 3, "expected a width");
    bad_plan("four", 3, "expected a width");
    bad_plan("0-5:2,4-9:4", 10, "layers 4-5 are given twice ('0-5:2' and '4-9:4')");
    bad_plan("0-5:2,5-9:4", 10, "layer 5 is given twice");
    bad_plan("0-3:2,5-9:4", 10, "layer 4 has no width");
    bad_plan("0-3:2", 10, "layers 4-9 have no width");
    bad_plan("0-12:2", 10, "names layer 12 but the model has 10 layers");
    bad_plan("0-9:5q", 10, "no valid width");
    bad_plan("a-b:4", 10, "is not a layer N or range");
    bad_plan("0-9", 10, "expected a width");
    bad_plan("0-9:4,head:4", 10, "only be served at 8 bits");
    bad_plan("missing.json", 4, "missing.json");
    /* JSON files */
    const char *path = "/tmp/mq_test_plan.json";
    FILE *f = fopen(path, "w");
    fputs("{\"default\": 4, \"layers\": {\"0-1\": 2, \"3\": \"2x\"}, \"head\": 8}", f);
    fclose(f);
    ok_plan(path, 5, "0-1:2,2:4,3:2x,4:4,head:8", "2 2 4 2x 4 ");
    f = fopen(path, "w");
    fputs("{\"layers\": {\"0-1\": 2}}", f);
    fclose(f);
    bad_plan(path, 4, "layers 2-3 have no width and there is no \"default\"");
    f = fopen(path, "w");
    fputs("{\"default\": 3, \"layers\": {\"0-1\": 2, \"1\": 4}}", f);
    fclose(f);
    bad_plan(path, 4, "layer 1 is given twice");
    f = fopen(path, "w");
    fputs("[1,2]", f);
    fclose(f);
    bad_plan(path, 4, "not a JSON object");
    unlink(path);
    /* lists */
    mq_plan *ps;
    int n;
    CHECK(mq_plan_list_parse("8,6,4,3,2,2x", 4, &ps, &n) == MQ_OK && n == 6, "uniform list: %s", mq_last_error());
    if (n == 6) CHECK(!strcmp(ps[5].text, "2x") && ps[1].bits[0] == 6, "list contents");
    mq_plans_free(ps, n);
    CHECK(mq_plan_list_parse("0-1:2,2-3:4;8", 4, &ps, &n) == MQ_OK && n == 2, "mixed list: %s", mq_last_error());
    if (n == 2) CHECK(!strcmp(ps[0].text, "0-1:2,2-3:4") && !strcmp(ps[1].text, "8"), "mixed list contents");
    mq_plans_free(ps, n);
    CHECK(mq_plan_list_parse("8,,", 4, &ps, &n) == MQ_OK && n == 1, "empty entries are skipped");
    mq_plans_free(ps, n);
    CHECK(mq_plan_list_parse("8,9", 4, &ps, &n) != MQ_OK && strstr(mq_last_error(), "'9'"), "bad list entry: %s", mq_last_error());
    return check_done("test_bitplan");
}
