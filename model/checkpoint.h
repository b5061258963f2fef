/* checkpoint.h: training checkpoints (doc/DESIGN.md section 5): everything a run needs to continue
 * bit-exactly, in one file.
 *
 * Layout (little-endian hosts; all numbers in host order):
 *   header  CHECKPOINT_SLOTS 8-byte slots (1024 bytes): magic, version, checksum, n_params, step,
 *           every ModelConfig field (attention type, PaTH shapes w_rank and conv_size, doc_token,
 *           rope_theta as the bits of a double), the training shape (B, T, grad_accum, world), the
 *           data source, the flip-flop generator state and the shard loader's DataLoaderState
 *           (10 slots); unused slots 0. Signed fields are stored as two's-complement int64.
 *   body    parameters, AdamW m, AdamW v: n_params fp32 each, in parameter-table order
 *           (params.h, via gpt_copy_out / gpt_copy_in); the same file with ZeRO-1, whose ranks gather
 *           their shards of the moments for it (train.c).
 *   size    exactly 1024 + 12 n_params bytes.
 *   checksum  64-bit FNV-1a over the header (checksum slot taken as 0) and the body.
 * RNG: the data generator's state is the only random state a run carries (initialisation happens
 * once; evaluation sets and samples draw from fixed or per-step seeds), so the header holds it all.
 * Writing is atomic: "<path>.tmp", fflush, fsync, rename; a crash never leaves a half-written file
 * under the real name. Reading checks magic, version, the config's consistency with n_params, the
 * file size and the checksum, then the config and training shape against the run that resumes,
 * naming the first field that differs ("checkpoint has n_layer 12, this run has 4").
 * checked by: tests/test_train.c "checkpoint" (round trip, truncated, corrupted, other config,
 * other world, bit-exact resume). */
#ifndef PATHGPT_MODEL_CHECKPOINT_H
#define PATHGPT_MODEL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "../data/dataloader.h"
#include "config.h"
#include "gpt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHECKPOINT_MAGIC 20261126
#define CHECKPOINT_VERSION 1
#define CHECKPOINT_SLOTS 128

typedef enum { CHECKPOINT_DATA_FLIPFLOP, CHECKPOINT_DATA_SHARDS } CheckpointData;

typedef struct {
    ModelConfig cfg;
    int B, T, grad_accum, world; /* training shape: rows per rank, tokens per row, micro-batches, ranks */
    int64_t step;                /* optimizer steps done */
    CheckpointData data;
    uint64_t flipflop_rng;       /* flip-flop: the training generator's state (Rng.state) */
    DataLoaderState loader;      /* shards: the training loader's position */
    uint64_t n_params;           /* set from the model by checkpoint_save */
} CheckpointHeader;

/* Writes g's parameters and AdamW state with h (n_params taken from g). m, v: NULL for g's own moments,
 * else the moments to write (n_params host floats each): a model that keeps only its shard of them
 * (ZeRO-1, gpt_shard_optimizer) needs the ranks' shards gathered. 0, or -1 with a reason. */
int checkpoint_save(const char *path, Gpt *g, const CheckpointHeader *h, const float *m, const float *v, char *why,
                    size_t why_len);

/* Reads and checks the header of path (magic, version, config, size). 0, or -1 with a reason. */
int checkpoint_read_header(const char *path, CheckpointHeader *h, char *why, size_t why_len);

/* 0 if a run shaped like run can continue from saved: same config, B, T, grad_accum, world and data
 * source; else -1 naming the first field that differs. */
int checkpoint_compare(const CheckpointHeader *saved, const CheckpointHeader *run, char *why, size_t why_len);

/* Reads path's header into saved, compares it with run, checks the checksum, then loads the
 * parameters and AdamW moments into g (whose config must be run->cfg; a model with a shard of the
 * moments takes that shard's). 0, or -1 with a reason and g unchanged. */
int checkpoint_load(const char *path, Gpt *g, const CheckpointHeader *run, CheckpointHeader *saved,
                    char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif
