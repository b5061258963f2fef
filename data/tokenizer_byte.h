/* tokenizer_byte.h: the byte-level tokenizer (doc/DESIGN.md section 5): vocabulary 256, token id =
 * byte value (0..255), so any file is text and needs no tokenizer files. Decoding an id outside
 * 0..255 (a model whose padded vocabulary lets it sample one) writes the replacement marker '?'
 * and counts it; it is never an error, so sampling output always prints.
 * checked by: tests/test_data.c "tokenizer_byte" (round trip of all 256 bytes, out-of-range ids). */
#ifndef PATHGPT_DATA_TOKENIZER_BYTE_H
#define PATHGPT_DATA_TOKENIZER_BYTE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TOKENIZER_BYTE_VOCAB 256
#define TOKENIZER_BYTE_REPLACEMENT '?'

/* ids[k] = (unsigned char)text[k] for k < n_bytes. */
void tokenizer_byte_encode(const char *text, size_t n_bytes, int *ids);

/* out[k] = (char)ids[k], or TOKENIZER_BYTE_REPLACEMENT where ids[k] is not in 0..255; writes
 * exactly n bytes (no terminating NUL). Returns how many ids were replaced. */
size_t tokenizer_byte_decode(const int *ids, size_t n, char *out);

#ifdef __cplusplus
}
#endif
#endif
