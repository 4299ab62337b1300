/*
 * cli.h — what the matquant commands share: the command entry points and a
 * small long-option parser that gives usage errors (exit 2) naming the
 * option at fault.
 *
 * Exit codes: 0 success, 1 runtime error (message names the file/tensor/key),
 * 2 usage error.
 */
#ifndef MQ_CLI_H
#define MQ_CLI_H

#include <stdbool.h>

int cmd_run(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* ---- option parsing ----
 * Each command describes its options in a table; cli_parse fills the
 * targets, collects positional arguments, handles --help (prints help,
 * returns 0 via *done) and reports unknown options or bad values (exit 2). */
typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_FLOAT } cli_opt_kind;
typedef struct {
    const char *name;   /* long name without "--" */
    char short_name;    /* 0 if none */
    cli_opt_kind kind;
    void *target;       /* bool*, const char**, int*, float* */
    const char *help;   /* one line, including the default */
} cli_opt;

/* Returns -1 to continue, or an exit code (0 after --help, 2 on usage error).
 * Positional arguments go to pos[0..*npos) (at most max_pos). */
int cli_parse(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
              int argc, char **argv, char **pos, int max_pos, int *npos);
void cli_print_help(const char *cmd, const char *usage, const char *summary, const cli_opt *opts);

/* Print "matquant <cmd>: <message>" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
