/*
 * tasks.h — zero-shot multiple-choice and cloze evaluation, scored the way
 * EleutherAI's lm-evaluation-harness (v0.4) scores it: arc_easy,
 * arc_challenge, hellaswag, piqa, boolq, winogrande, lambada (OpenAI).
 *
 * Scoring of one request (context, continuation), as lm-eval's
 * loglikelihood does it:
 *   - trailing whitespace of the context moves to the front of the
 *     continuation;
 *   - ctx = encode(context), whole = encode(context + continuation), the
 *     continuation tokens are whole[len(ctx):] and the model sees
 *     ctx + those tokens (never whole's own prefix);
 *   - BOS is prepended when the tokenizer asks for it (mq_tokenizer_add_bos;
 *     lm-eval's HF backend adds none by default: a deliberate difference for
 *     models that were trained with BOS); an empty context becomes BOS (or EOS);
 *   - the sequence is cut from the left to the model's max_seq + 1 tokens;
 *   - loglik = sum of log p(continuation token | everything before it);
 *     greedy = every continuation token is the argmax of its distribution.
 * Per item: acc = [argmax_i loglik_i == gold]; acc_norm = [argmax_i
 * loglik_i / len(choice_i) == gold] with len the choice's length in Unicode
 * code points without the " " delimiter (lm-eval's len(str)); ties go to
 * the first choice (np.argmax). Standard errors sqrt(p(1-p)/(n-1)).
 * lambada: acc = greedy, ppl = exp(-mean over items of loglik) (lm-eval's
 * "perplexity": per document, not per token).
 *
 * Prompt formats and data files (under data_dir, see shared/data/SOURCES.md):
 *   arc_*      arc/arc_{easy,challenge}_test.llmfoundry.jsonl
 *              "Question: {q}\nAnswer:" + " {choice}"  (the file's query is
 *              already "Question: {q}")
 *   hellaswag  hellaswag/hellaswag_val_full.txt (6 lines per item)
 *              "{label}: {ctx}" + " {ending}"
 *   piqa       piqa/valid.jsonl + piqa/valid-labels.lst
 *              "Question: {goal}\nAnswer:" + " {sol}"
 *   boolq      boolq/boolq_dev.llmfoundry.jsonl ("Passage: {p}\nQuestion: {q}?")
 *              "{p}\nQuestion: {q}?\nAnswer:" + " no" / " yes"
 *   winogrande winogrande/winogrande_dev.llmfoundry.jsonl: partial scoring,
 *              "{sentence before _}{option}" + " {rest of sentence}"
 *   lambada    lambada/lambada_openai_test.llmfoundry.jsonl
 *              "{text but the last word}" + " {last word}"
 * Known difference: the llm-foundry ARC files give every question 4
 * choices, the AI2 release has a few 3- and 5-choice items.
 *
 * Not here: few-shot prompts, generation tasks, batching across requests.
 */
#ifndef MQ_TASKS_H
#define MQ_TASKS_H

#include "nn/model.h"

typedef struct {
    char task[32];
    int n;                       /* items scored */
    double acc, acc_se;
    bool has_acc_norm;           /* does lm-eval report acc_norm for this task? */
    double acc_norm, acc_norm_se;
    bool has_ppl;                /* lambada */
    double ppl;
    double seconds;
} mq_task_result;

/* The metric lm-eval's tables lead with: acc_norm when reported, else acc. */
static inline double mq_task_primary(const mq_task_result *r) {
    return r->has_acc_norm ? r->acc_norm : r->acc;
}

/* Evaluate `task` on the first `limit` items (limit <= 0: all) of its file
 * under data_dir. The model needs a tokenizer. Errors: unknown task (the
 * message lists the known ones), missing file, malformed line (the message
 * names file and line), a continuation longer than the model's context. */
mq_status mq_task_eval(const mq_model *m, const char *task, const char *data_dir, int limit,
                       mq_task_result *out);

/* Comma-separated list of the known task names (static string). */
const char *mq_task_names(void);
/* Is name a known task? */
bool mq_task_known(const char *name);

/* ---- one request at a time (what mq_task_eval uses) ----
 * A scorer holds an inference state (grown as needed) and reuses the KV cache
 * of the last context when the next request has the same context tokens. */
typedef struct mq_scorer mq_scorer;
mq_scorer *mq_scorer_new(const mq_model *m);
void mq_scorer_free(mq_scorer *s);
/* loglik of continuation after context, lm-eval's way (see above).
 * greedy and n_tokens (continuation tokens scored) may be NULL. */
mq_status mq_scorer_loglik(mq_scorer *s, const char *context, const char *continuation, double *loglik,
                           bool *greedy, int *n_tokens);

#endif
