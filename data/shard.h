/* shard.h: token shards in llm.c's format (doc/DESIGN.md section 5), so llm.c's FineWeb,
 * TinyStories and TinyShakespeare shards work unchanged:
 *   header: 256 x int32 little-endian: [0] magic 20240520, [1] version 1, [2] token count n
 *   body:   n x uint16 token ids
 * A file's size must be exactly 1024 + 2n bytes. Writers write to "<path>.tmp", flush, then rename,
 * so a crash never leaves a half-written shard under the real name. */
#ifndef PATHGPT_DATA_SHARD_H
#define PATHGPT_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)

/* Validates the header and the file size; returns the token count. On a bad file: 0 and a
 * one-line reason in why (e.g. "wrong magic 1234 (expected 20240520)", "truncated: ..."). */
size_t shard_check(const char *path, char *why, size_t why_len);

/* Like shard_check, but exits with the reason (user error) on a bad file. */
size_t shard_count_or_die(const char *path);

/* Reads tokens [offset, offset + n) of a checked shard into out. */
void shard_read(const char *path, size_t offset, size_t n, uint16_t *out);

/* Writes a whole shard atomically (temp file + fsync + rename). Returns 0, or -1 with errno set. */
int shard_write(const char *path, const uint16_t *tokens, size_t n);

#ifdef __cplusplus
}
#endif
#endif
