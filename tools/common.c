/* common.c — see common.h. */
#include "common.h"

#include "cli.h"

#include <string.h>

mq_model *tool_load_model(const char *cmd, const char *path, const char *tokenizer, const char *bits,
                          bool need_tok) {
    /* every command but quantize only runs the model: 16-bit and packed forms, no fp32 copies */
    mq_load_opts opts = {.tokenizer_path = tokenizer, .bits = bits, .serve = strcmp(cmd, "quantize") != 0};
    mq_model *m = NULL;
    if (mq_model_load(path, &opts, &m) != MQ_OK) {
        cli_error(cmd, "%s", mq_last_error());
        return NULL;
    }
    if (need_tok && !m->tok) {
        cli_error(cmd, "%s: no tokenizer found in the model; give one with --tokenizer PATH "
                  "(tokenizer.json, or tokenizer.bin for llama2.c checkpoints)", path);
        mq_model_free(m);
        return NULL;
    }
    return m;
}
