/*
 * matquant.c — the command table: `matquant <command> [options]`.
 * Each command lives in tools/cmd_<name>.c; this file dispatches and holds
 * the shared option parser (cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"quantize", cmd_quantize, "learn int8 parent codes good at several widths; write a checkpoint"},
    {"run", cmd_run, "generate text from a prompt"},
    {"eval", cmd_eval, "perplexity (and more) of a model on a text file"},
    {"inspect", cmd_inspect, "list the tensors and metadata of a safetensors or GGUF file"},
    {"bench", cmd_bench, "prompt and generation speed per bit plan, bytes per token, bandwidth"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: matquant <command> [options]   (matquant <command> --help)\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nMODEL is a Hugging Face directory, a .gguf file or a llama2.c .bin.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "matquant: unknown command '%s' (matquant --help lists the commands)\n", argv[1]);
    return 2;
}

/* ============================================================ options */

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "matquant %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void cli_print_help(const char *cmd, const char *usage_line, const char *summary,
                    const cli_opt *opts) {
    printf("usage: matquant %s %s\n\n%s\n\noptions:\n", cmd, usage_line, summary);
    for (const cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        const char *arg = o->kind == OPT_FLAG ? "" : o->kind == OPT_STR ? " S"
                        : o->kind == OPT_INT ? " N" : " X";
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s", o->short_name, o->name, arg);
        else
            snprintf(left, sizeof left, "    --%s%s", o->name, arg);
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help");
}

static int set_value(const char *cmd, const cli_opt *o, const char *val) {
    char *end;
    switch (o->kind) {
    case OPT_STR: *(const char **)o->target = val; return 0;
    case OPT_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || *end || end == val || v < -2147483647L || v > 2147483647L) {
            cli_error(cmd, "--%s expects an integer, got '%s'", o->name, val);
            return 2;
        }
        *(int *)o->target = (int)v;
        return 0;
    }
    case OPT_FLOAT: {
        errno = 0;
        float v = strtof(val, &end);
        if (errno || *end || end == val) {
            cli_error(cmd, "--%s expects a number, got '%s'", o->name, val);
            return 2;
        }
        *(float *)o->target = v;
        return 0;
    }
    case OPT_FLAG: *(bool *)o->target = true; return 0;
    }
    return 2;
}

int cli_parse(const char *cmd, const char *usage_line, const char *summary, const cli_opt *opts,
              int argc, char **argv, char **pos, int max_pos, int *npos) {
    *npos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            cli_print_help(cmd, usage_line, summary, opts);
            return 0;
        }
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != 0) {
            const cli_opt *o = NULL;
            const char *inline_val = NULL;
            if (a[1] == '-') {
                const char *name = a + 2;
                const char *eq = strchr(name, '=');
                size_t len = eq ? (size_t)(eq - name) : strlen(name);
                for (const cli_opt *p = opts; p && p->name; p++)
                    if (strlen(p->name) == len && !strncmp(p->name, name, len)) o = p;
                if (eq) inline_val = eq + 1;
            } else if (a[2] == 0) {
                for (const cli_opt *p = opts; p && p->name; p++)
                    if (p->short_name == a[1]) o = p;
            }
            if (!o) {
                cli_error(cmd, "unknown option '%s' (see matquant %s --help)", a, cmd);
                return 2;
            }
            if (o->kind == OPT_FLAG) {
                if (inline_val) {
                    cli_error(cmd, "--%s takes no value", o->name);
                    return 2;
                }
                *(bool *)o->target = true;
                continue;
            }
            const char *val = inline_val;
            if (!val) {
                if (i + 1 >= argc) {
                    cli_error(cmd, "option '%s' needs a value", a);
                    return 2;
                }
                val = argv[++i];
            }
            int rc = set_value(cmd, o, val);
            if (rc) return rc;
            continue;
        }
        if (*npos >= max_pos) {
            cli_error(cmd, "unexpected argument '%s' (see matquant %s --help)", a, cmd);
            return 2;
        }
        pos[(*npos)++] = a;
    }
    return -1;
}
