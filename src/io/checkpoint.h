/*
 * checkpoint.h — matquant checkpoints (docs/format.md is normative): an HF
 * directory with config.json, the tokenizer, and model.safetensors in which
 * every quantized linear X.weight [out, in] is stored as
 *   X.qweight U8 [out, in]     int8 parent codes
 *   X.scale   F32 [out, in/g]  alpha per row and group
 *   X.zero    U8 [out, in/g]   integer zero point per row and group
 * and every other tensor in its source dtype (F16/BF16 when the source
 * tensor was and its values are unchanged, else F32); __metadata__ keys
 * prefixed "matquant.".
 * The directory is written atomically: files go to OUT.tmp.<pid>/, which is
 * renamed to OUT at the end, so an interrupted run never leaves a
 * half-written checkpoint under the final name.
 *
 * Not here: producing the codes (src/train), slicing them (src/quant/ref.c).
 */
#ifndef MQ_CHECKPOINT_H
#define MQ_CHECKPOINT_H

#include "nn/model.h"

typedef enum {
    MQ_LIN_Q = 0, MQ_LIN_K, MQ_LIN_V, MQ_LIN_O, MQ_LIN_GATE, MQ_LIN_UP, MQ_LIN_DOWN, MQ_LIN_COUNT
} mq_lin_kind;

/* One quantized linear layer: its parent codes and grid. */
typedef struct {
    int layer;
    mq_lin_kind kind;
    int rows, cols, group;  /* group = cols for per-channel */
    uint8_t *q;             /* (rows, cols) parent codes */
    float *scale;           /* (rows, cols/group) alpha */
    uint8_t *zero;          /* (rows, cols/group) zero points */
} mq_qlinear;

/* What the checkpoint says about how it was made. */
typedef struct {
    int format_version;     /* 1 */
    int parent_bits;        /* 8 */
    int group_size;         /* 0 = per channel */
    char scope[8];          /* "ffn" | "all" */
    char method[16];        /* "minmax" | "gptq" | "omniquant" | "qat" */
    int grid_bits;          /* 8: int8 parent grid; r: native r-bit grid (single-width baselines) */
    int n_train;            /* trained widths R */
    int train_bits[8];
    float lambda[8];
    char calibration[512];  /* free text: file, samples x length, seed */
    char source[512];       /* source model path */
} mq_qmeta;

/* The HF tensor base name of a linear ("model.layers.3.mlp.up_proj"). */
void mq_linear_name(int layer, mq_lin_kind kind, char *buf, size_t cap);
/* The fp32 weight pointer of that linear in m, with its shape. */
float *mq_linear_weight(const mq_model *m, int layer, mq_lin_kind kind, int *rows, int *cols);
/* Is the kind inside the scope ("ffn": gate, up, down; "all": every linear)? */
bool mq_scope_has(const char *scope, mq_lin_kind kind);

/* Write the checkpoint directory `dir` from the model m (every tensor not
 * quantized is taken from m: its fp32 buffer, written in the source dtype
 * when that is F16/BF16 and exact, or its 16-bit form when m is served) and
 * the n quantized linears. The
 * tokenizer is copied from m's source (tokenizer.json / tokenizer.bin) or
 * written from its vocabulary. Errors name the path. */
mq_status mq_checkpoint_write(const char *dir, const mq_model *m, const mq_qlinear *q, int n,
                              const mq_qmeta *meta);

/* Can `dir` receive a checkpoint (absent, empty, or an older matquant
 * checkpoint that will be replaced)? Callers check before long work. */
mq_status mq_checkpoint_can_write(const char *dir);

/* Read the quantized linears and metadata of a checkpoint directory
 * (validating shapes, groups, dtypes). *q is malloc'ed (mq_qlinears_free). */
mq_status mq_checkpoint_read(const char *dir, mq_qlinear **q, int *n, mq_qmeta *meta);
void mq_qlinears_free(mq_qlinear *q, int n);
/* Does dir hold a matquant checkpoint (model.safetensors with matquant.*
 * metadata)? */
bool mq_checkpoint_detect(const char *dir);

#endif
