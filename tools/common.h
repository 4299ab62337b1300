/*
 * common.h — helpers the model commands share: loading a model with the
 * standard error reporting, reading a text file, tokenizing it.
 */
#ifndef MQ_TOOLS_COMMON_H
#define MQ_TOOLS_COMMON_H

#include "nn/model.h"

/* Load MODEL (with --tokenizer and, for checkpoints, the --bits plan if
 * given); on failure print
 * "matquant <cmd>: <message>" and return NULL. need_tok: fail if the model
 * ends up without a tokenizer, saying how to give one. */
mq_model *tool_load_model(const char *cmd, const char *path, const char *tokenizer, const char *bits,
                          bool need_tok);

#endif
