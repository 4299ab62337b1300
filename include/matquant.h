/*
 * matquant.h — the public API of libmatquant (build/libmatquant.a), in one
 * include. Programs compile with `-Iinclude -Isrc` and link
 * `build/libmatquant.a -lopenblas -lcjson -lpcre2-8 -lm -fopenmp`;
 * tests/test_api.c is a complete example that uses nothing else.
 *
 * The life of a model, and who owns what:
 *
 *   mq_model *m;                                  // MQ_OK or a status with
 *   mq_model_load(path, &opts, &m);               // mq_last_error() naming the
 *                                                 // file / tensor / key at fault
 *   int32_t *ids; size_t n;                       // ids: malloc'ed, caller frees
 *   mq_tokenizer_encode(m->tok, text, len, add_bos, &ids, &n);
 *   mq_state *s = mq_state_new(m, max_ctx, max_batch);   // KV cache + scratch
 *   mq_forward(m, s, ids, n, 0, logits, false);    // logits (V) of the last token
 *   mq_perplexity(m, NULL, ids, n, 512, 0, bos, NULL, NULL, &res);
 *   mq_state_free(s); mq_model_free(m);
 *
 * A matquant checkpoint (a directory written by `matquant quantize` or by
 * mq_quantize + mq_checkpoint_write) loads through the same mq_model_load;
 * opts.bits chooses the bit plan ("4", "2x", "0-5:2,6-29:4", ...) and
 * mq_plan_parse + mq_model_apply_plan switch plans without re-reading.
 *
 * Conventions: every function that can fail returns mq_status (MQ_OK = 0)
 * and leaves a one-line message in mq_last_error() (thread-local); the
 * library never exits or prints on its own; objects are freed by their
 * mq_*_free function, which accepts NULL. The module headers below hold the
 * contract comment of each function.
 *
 * Not here: the command-line tool (tools/), which is a client of this API.
 */
#ifndef MATQUANT_H
#define MATQUANT_H

#define MATQUANT_VERSION "0.1.0"

#include "core/core.h"          /* status codes, errors, dtypes, files, atomic writes */
#include "text/tokenizer.h"     /* tokenizer.json BPE, GGUF vocabularies, llama2.c tokenizer.bin */
#include "nn/model.h"           /* config, loading (HF dir, GGUF, llama2.c), forward pass with KV cache */
#include "io/safetensors.h"     /* safetensors read/write */
#include "io/gguf.h"            /* GGUF read/write */
#include "io/checkpoint.h"      /* the matquant checkpoint (docs/format.md) */
#include "quant/ref.h"          /* the quantization spec: parent codes, slices, extra precision */
#include "quant/plan.h"         /* bit plans */
#include "quant/qmodel.h"       /* a checkpoint model served at a plan */
#include "train/quantize.h"     /* minmax and MatGPTQ */
#include "eval/ppl.h"           /* perplexity (llama-perplexity protocol), KL, top-1 */
#include "eval/tasks.h"         /* zero-shot tasks scored like lm-evaluation-harness */

#endif
