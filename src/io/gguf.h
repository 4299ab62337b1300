/*
 * gguf.h — read (and write F32/F16 tensors of) GGUF v2/v3 files, the format
 * of llama.cpp (ggml/docs/gguf.md): magic "GGUF", version, tensor count,
 * metadata key/value pairs, tensor infos (name, dims, ggml type, offset),
 * alignment padding (general.alignment, default 32), tensor data.
 *
 * Reading maps the file and validates everything against the file size:
 * string and array lengths, dimension products (overflow-checked), type ids,
 * each tensor's byte range inside the data section, no overlaps. Tensors are
 * views into the map; mq_gguf_dequant converts one to fp32.
 *
 * Dims follow ggml: ne[0] is the fastest-varying (a [out][in] weight matrix
 * has ne[0] = in, ne[1] = out).
 *
 * Not here: what the tensors mean or llama.cpp's Q/K row permutation
 * (src/nn/load_gguf.c); the tokenizer (src/text/tokenizer.c reads the
 * tokenizer.ggml.* keys through this API).
 */
#ifndef MQ_GGUF_H
#define MQ_GGUF_H

#include "core/core.h"

/* ggml tensor types (values as in ggml.h) */
enum {
    MQ_GGML_F32 = 0, MQ_GGML_F16 = 1, MQ_GGML_Q4_0 = 2, MQ_GGML_Q4_1 = 3,
    MQ_GGML_Q5_0 = 6, MQ_GGML_Q5_1 = 7, MQ_GGML_Q8_0 = 8, MQ_GGML_Q8_1 = 9,
    MQ_GGML_Q2_K = 10, MQ_GGML_Q3_K = 11, MQ_GGML_Q4_K = 12, MQ_GGML_Q5_K = 13,
    MQ_GGML_Q6_K = 14, MQ_GGML_Q8_K = 15, MQ_GGML_I8 = 24, MQ_GGML_I16 = 25,
    MQ_GGML_I32 = 26, MQ_GGML_I64 = 27, MQ_GGML_F64 = 28, MQ_GGML_BF16 = 30,
};

/* gguf metadata value types */
enum {
    MQ_GGUF_U8 = 0, MQ_GGUF_I8 = 1, MQ_GGUF_U16 = 2, MQ_GGUF_I16 = 3,
    MQ_GGUF_U32 = 4, MQ_GGUF_I32 = 5, MQ_GGUF_F32 = 6, MQ_GGUF_BOOL = 7,
    MQ_GGUF_STRING = 8, MQ_GGUF_ARRAY = 9, MQ_GGUF_U64 = 10, MQ_GGUF_I64 = 11,
    MQ_GGUF_F64 = 12,
};

typedef struct {
    const char *name;     /* NUL-terminated copy */
    uint32_t type;        /* MQ_GGML_* */
    int ndim;
    int64_t ne[MQ_MAX_DIMS];
    const void *data;     /* into the map */
    size_t nbytes;
} mq_gguf_tensor;

typedef struct mq_gguf mq_gguf;

mq_status mq_gguf_open(const char *path, mq_gguf **out);
void mq_gguf_close(mq_gguf *g);
const char *mq_gguf_path(const mq_gguf *g);
uint32_t mq_gguf_version(const mq_gguf *g);

/* ---- metadata. Getters return false when the key is absent or has an
 * incompatible type (integers of any width convert to the requested one when
 * the value fits; f32/f64 convert to float). */
int mq_gguf_n_kv(const mq_gguf *g);
const char *mq_gguf_kv_key(const mq_gguf *g, int i);
uint32_t mq_gguf_kv_type(const mq_gguf *g, int i);
int mq_gguf_find_key(const mq_gguf *g, const char *key); /* -1 if absent */
bool mq_gguf_get_u32(const mq_gguf *g, const char *key, uint32_t *v);
bool mq_gguf_get_i64(const mq_gguf *g, const char *key, int64_t *v);
bool mq_gguf_get_f32(const mq_gguf *g, const char *key, float *v);
bool mq_gguf_get_bool(const mq_gguf *g, const char *key, bool *v);
/* String value: pointer into the map (NOT NUL-terminated) and its length. */
bool mq_gguf_get_str(const mq_gguf *g, const char *key, const char **s, size_t *len);
/* Array: element type (MQ_GGUF_*) and count. */
bool mq_gguf_get_arr(const mq_gguf *g, const char *key, uint32_t *elem_type, uint64_t *n);
/* Element i of a string array (pointer into the map + length). */
bool mq_gguf_arr_str(const mq_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);
/* Element i of a numeric array, converted. */
bool mq_gguf_arr_f32(const mq_gguf *g, const char *key, uint64_t i, float *v);
bool mq_gguf_arr_i64(const mq_gguf *g, const char *key, uint64_t i, int64_t *v);
/* One line describing the value of kv i (for `matquant inspect`), e.g.
 * "u32 = 576" or "arr[str,49152] = [\"<|endoftext|>\", ...]". */
void mq_gguf_kv_describe(const mq_gguf *g, int i, char *buf, size_t bufsize);

/* ---- tensors */
int mq_gguf_n_tensors(const mq_gguf *g);
const mq_gguf_tensor *mq_gguf_tensor_at(const mq_gguf *g, int i);
const mq_gguf_tensor *mq_gguf_find_tensor(const mq_gguf *g, const char *name);
const char *mq_ggml_type_name(uint32_t type); /* "Q4_1", ... or "?" */
int64_t mq_gguf_tensor_numel(const mq_gguf_tensor *t);

/* Dequantize the whole tensor to fp32 (numel floats, ggml element order).
 * Supported: F32 F16 BF16 F64 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K.
 * Other types: MQ_ERR_UNSUPPORTED naming the tensor and type. */
mq_status mq_gguf_dequant(const mq_gguf_tensor *t, float *out);
/* Dequantize rows [row0, row0+nrows) of a 2-D-or-more tensor (row = ne[0]
 * elements). */
mq_status mq_gguf_dequant_rows(const mq_gguf_tensor *t, int64_t row0, int64_t nrows, float *out);

/* ---- writing (F32 / F16 tensors; used to hand models to llama.cpp) */
typedef struct mq_gguf_writer mq_gguf_writer;
mq_gguf_writer *mq_gguf_writer_new(void);
void mq_gguf_writer_free(mq_gguf_writer *w);
void mq_gguf_set_u32(mq_gguf_writer *w, const char *key, uint32_t v);
void mq_gguf_set_i32(mq_gguf_writer *w, const char *key, int32_t v);
void mq_gguf_set_f32(mq_gguf_writer *w, const char *key, float v);
void mq_gguf_set_bool(mq_gguf_writer *w, const char *key, bool v);
void mq_gguf_set_str(mq_gguf_writer *w, const char *key, const char *v);
void mq_gguf_set_arr_str(mq_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void mq_gguf_set_arr_f32(mq_gguf_writer *w, const char *key, const float *v, uint64_t n);
void mq_gguf_set_arr_i32(mq_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Add a tensor given as fp32 data with ggml dims ne[0..ndim); stored as
 * type (MQ_GGML_F32 or MQ_GGML_F16). Data is copied. */
mq_status mq_gguf_add_tensor(mq_gguf_writer *w, const char *name, const float *data,
                             int ndim, const int64_t *ne, uint32_t type);
/* Write atomically (temp file, fsync, rename). */
mq_status mq_gguf_write(mq_gguf_writer *w, const char *path);

#endif
