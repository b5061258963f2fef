/* dataloader.h: training batches from llm.c token shards (data/shard.h), data parallel from the start.
 *
 * Shards: the files matching a glob pattern, sorted by name (strcmp); no match is an error.
 * Windows: a global batch is G = B*T*world tokens. Shard s of n_s tokens holds
 * n_windows_s = floor((n_s - 1) / G) windows; window k starts at token k*G and rank r of world W reads
 *   tokens [k*G + r*B*T, k*G + (r+1)*B*T + 1):  inputs = the first B*T, targets = the last B*T,
 * so the ranks read disjoint slices of one global batch, and world W with B rows per rank yields
 * row for row what world 1 with W*B rows yields (the global batch does not depend on W). The
 * tail of a shard shorter than a window is never read; a shard with no window is an error.
 * Order per epoch e: shards in order sigma_e, the windows of shard s in order pi_{e,s}; both the
 * identity without shuffle, else Fisher-Yates permutations (common/rng.h) seeded from
 * (seed, e) and (seed, e, s) alone, the same on every rank. The state is therefore only the
 * position (epoch, index into sigma_e, index into pi_{e,s}) plus the seed and the shape it
 * belongs to: rank-independent (every rank saves the same state) and exactly restorable.
 * Checks: every token read must be < vocab (an error names the shard and token position).
 * Memory: the shard list and one shard's window order; each batch is read with pread.
 * Tokens are little-endian uint16 (llm.c), read on little-endian hosts.
 * checked by: tests/test_data.c "dataloader" (windows, ranks vs world 1, shuffle, resume, vocab). */
#ifndef PATHGPT_DATA_DATALOADER_H
#define PATHGPT_DATA_DATALOADER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *pattern; /* glob of shard files, e.g. "dev/data/fineweb10B/fineweb_train_*.bin" */
    int B, T;            /* rows per rank and step, tokens per row */
    int rank, world;     /* this process's rank in [0, world) */
    int vocab;           /* token ids must be < vocab (the model's real, unpadded vocabulary) */
    int shuffle;         /* 1: permute shards and windows every epoch; 0: file order */
    uint64_t seed;       /* shuffle seed, the same on every rank */
} DataLoaderConfig;

/* Where the next batch comes from, plus what it is only valid for; all 8-byte fields, so a
 * checkpoint can store it as is. The same on every rank. */
typedef struct {
    int64_t epoch;      /* completed passes over all shards */
    int64_t shard_pos;  /* index into this epoch's shard order */
    int64_t window_pos; /* index into that shard's window order */
    uint64_t seed;
    int64_t B, T, world, shuffle, n_shards, total_tokens; /* must match the restoring loader */
} DataLoaderState;

typedef struct {
    int B, T, rank, world, vocab, shuffle;
    uint64_t seed;
    int n_shards;
    char **paths;              /* (n_shards,) sorted */
    int64_t *n_windows;        /* (n_shards,) windows per shard */
    int64_t total_tokens;      /* sum of the shards' token counts */
    int64_t batches_per_epoch; /* sum of n_windows: steps per pass over the data */
    int64_t epoch, shard_pos, window_pos; /* position of the next batch */
    int64_t *shard_order;      /* (n_shards,) sigma_epoch; valid for order_epoch */
    int64_t *window_order;     /* (max n_windows,) pi_{epoch, shard}; valid for window_epoch/shard */
    int64_t order_epoch, window_epoch, window_shard; /* -1: not computed yet */
    int fd, fd_shard;          /* open file of shard fd_shard, or -1 */
    uint16_t *buf;             /* (B*T + 1,) */
} DataLoader;

/* 0, or -1 with a one-line reason in why (bad shape, no match, bad or too-short shard); on -1
 * nothing needs freeing. */
int dataloader_init(DataLoader *dl, const DataLoaderConfig *cfg, char *why, size_t why_len);
void dataloader_init_or_die(DataLoader *dl, const DataLoaderConfig *cfg);
void dataloader_free(DataLoader *dl);

/* The next batch: inputs, targets (B, T) int. 0, or -1 with a reason (token >= vocab, read
 * failure), and then the position does not move. */
int dataloader_next(DataLoader *dl, int *inputs, int *targets, char *why, size_t why_len);
void dataloader_next_or_die(DataLoader *dl, int *inputs, int *targets);

/* Back to the first batch of epoch 0 (an evaluation pass starts here). */
void dataloader_reset(DataLoader *dl);

void dataloader_state(const DataLoader *dl, DataLoaderState *st);
/* Continue exactly where st was taken. -1 with a reason, position unchanged, if st belongs to
 * another shape, world, seed, shuffle setting or shard set, or points outside the data. */
int dataloader_restore(DataLoader *dl, const DataLoaderState *st, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
