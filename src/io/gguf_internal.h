/*
 * gguf_internal.h — what gguf.c, gguf_dequant.c and gguf_write.c share and
 * nobody else needs: the block geometry of each ggml type.
 *
 * Not here: anything public (gguf.h).
 */
#ifndef MQ_GGUF_INTERNAL_H
#define MQ_GGUF_INTERNAL_H

#include "io/gguf.h"

/* Bytes per block and elements per block of ggml type `type` (1 element per
 * "block" for the plain types); *bytes = *elems = 0 for a type we do not know.
 * The row size of a tensor is ne[0] / elems * bytes. */
void mq_ggml_block(uint32_t type, size_t *bytes, int *elems);

#endif
