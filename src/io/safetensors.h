/*
 * safetensors.h — read and write the safetensors format
 * (https://github.com/huggingface/safetensors: 8-byte little-endian header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
 * "__metadata__": {str: str}}, then the data section).
 *
 * Reading maps the file and validates it as hostile input: header length
 * against the file size, valid UTF-8 JSON object, known dtypes, shapes whose
 * byte size (overflow-checked) equals data_offsets' span, every span inside
 * the data section, no two spans overlapping. Tensors are views into the map.
 *
 * Not here: what tensors mean (src/nn, src/io/checkpoint.c); NaN checks
 * (done where tensors are converted to fp32).
 */
#ifndef MQ_SAFETENSORS_H
#define MQ_SAFETENSORS_H

#include "core/core.h"

typedef struct mq_st_file mq_st_file;

/* Open and validate one .safetensors file. On error *out is NULL and the
 * message names the file and what is wrong. */
mq_status mq_st_open(const char *path, mq_st_file **out);
void mq_st_close(mq_st_file *f);

int mq_st_count(const mq_st_file *f);
const mq_tensor *mq_st_at(const mq_st_file *f, int i);       /* in file order */
const mq_tensor *mq_st_find(const mq_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ entries (string values only; NULL if absent). */
const char *mq_st_meta(const mq_st_file *f, const char *key);
int mq_st_meta_count(const mq_st_file *f);
void mq_st_meta_at(const mq_st_file *f, int i, const char **key, const char **value);
const char *mq_st_path(const mq_st_file *f);

/* A model's weights: model.safetensors, or the shards named by
 * model.safetensors.index.json ("weight_map": {tensor: shard file}), in a
 * directory. Lookup by tensor name across shards. */
typedef struct mq_st_set mq_st_set;
mq_status mq_st_open_dir(const char *dir, mq_st_set **out);
void mq_st_set_close(mq_st_set *s);
const mq_tensor *mq_st_set_find(const mq_st_set *s, const char *name);
int mq_st_set_count(const mq_st_set *s);                      /* all tensors, all shards */
const mq_tensor *mq_st_set_at(const mq_st_set *s, int i);
/* The first shard's __metadata__ value for key, NULL if absent. */
const char *mq_st_set_meta(const mq_st_set *s, const char *key);

/* Write tensors (and string metadata pairs) to path atomically (temp file,
 * fsync, rename). The data section is contiguous (as the reference reader
 * requires): tensors are laid out widest dtype first, in the given order
 * within a width, so each data offset is aligned to its element size; the
 * header is padded with spaces to a multiple of 8. MQ_ERR_ARG for a tensor
 * whose nbytes does not match its shape, a repeated name or key. */
typedef struct {
    const char *key, *value;
} mq_kv;
mq_status mq_st_write(const char *path, const mq_tensor *tensors, int n_tensors,
                      const mq_kv *meta, int n_meta);

#endif
