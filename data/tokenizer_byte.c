/* tokenizer_byte.c: byte-level tokenizer; see tokenizer_byte.h. */
#include "tokenizer_byte.h"

void tokenizer_byte_encode(const char *text, size_t n_bytes, int *ids) {
    for (size_t k = 0; k < n_bytes; k++) ids[k] = (unsigned char)text[k];
}

size_t tokenizer_byte_decode(const int *ids, size_t n, char *out) {
    size_t n_replaced = 0;
    for (size_t k = 0; k < n; k++) {
        int is_byte = ids[k] >= 0 && ids[k] < TOKENIZER_BYTE_VOCAB;
        out[k] = is_byte ? (char)(unsigned char)ids[k] : TOKENIZER_BYTE_REPLACEMENT;
        n_replaced += !is_byte;
    }
    return n_replaced;
}
