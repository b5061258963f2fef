/* path_decode.h: one decoding step of attention over a key cache (doc/DESIGN.md section 1, "Decoding with a
 * key cache"): n sequences, one new token each, one layer; every attention type of model/config.h
 * (PaTH with w and beta, a forget gate with g, neither for plain softmax).
 *
 * Sequence b's new token sits at position t = pos[b] of its document; the cache holds the document's earlier
 * tokens j < t per head: keys k_j, for PaTH already multiplied by every later Householder factor up to t - 1
 * (k_j = H_{t-1} .. H_{j+1} k_j^orig), values v_j and gate sums G_j = g_0 + .. + g_j. The step:
 *   PaTH:   k_j <- H_t k_j = k_j - beta_t (w_t . k_j) w_t          for every j < t
 *   append: k_t (unchanged: the empty product), v_t, G_t = G_{t-1} + g_t   (G_{-1} = 0)
 *   z_j = scale q_t . k_j + gate_scale (G_t - G_j),  o_t = sum_{j<=t} softmax_j(z) v_j
 * so z_j = scale q_t^T H_t .. H_{j+1} k_j^orig + gate_scale (G_t - G_j), the forward's logit (path_attn.h).
 * A document start is pos[b] = 0: nothing earlier is read, so no cache needs clearing.
 * Precision: keys are kept in f32 (each is updated once per later token; bf16 storage would round it
 * again every step and drift), the update and the softmax in f32; values in bf16 (they are the bf16
 * GEMM outputs, never changed: exact); gate sums in f32.
 *
 * The conv of PaTH's w reads the document's last K rows of w_up: path_decode_window keeps them per
 * sequence as a window of K rows (the oldest first), then path_layer_w_forward (path_layer.h) runs on the
 * windows as rows of T = K tokens with doc_start 0; row K-1 of each window is the new token's w.
 *   window[b, k] <- window[b, k+1] if t-(K-1)+k >= 0 else 0    (k < K-1: earlier tokens of the document)
 *   window[b, K-1] <- w_up[b]
 *
 * Shapes (one layer; cap = the cache's tokens per sequence and head, H heads of dim d, C = H d):
 *   pos (n) int32 device, each < cap;  q, k, v (n,H,d) bf16 (q, k rotated for rope);
 *   w f32 unit rows per head: row b at w + b w_stride, or NULL;  beta (n,H) f32 or NULL;  g (n,H) f32 or NULL
 *   k_cache (n,H,cap,d) f32, v_cache (n,H,cap,d) bf16, G_cache (n,H,cap) f32 (NULL without a gate):
 *   entry t written, entries j < t updated (PaTH); o (n,H,d) bf16;  window (n,K,C) bf16, w_up (n,C) bf16
 *   scratch: path_decode_scratch_floats(n, H, d, cap) f32
 * One key/value head per query head: the model has a single head count (model/config.h).
 * Launch: attend grid (n H, key chunks of 64), 4 warps, one warp per key (update, score), then the
 * chunk's softmax-weighted values; combine (split-K, flash-decoding style) one block per (sequence, head)
 * merging the chunks' (max, sum, weighted values). Window: one thread per (sequence, channel).
 * Limits: d in {32, 64, 128}. Checked by tests/test_gpt_gpu.cu (decoding against the full forward, every
 * attention type, documents inside decoded sequences). */
#ifndef PATHGPT_KERNELS_PATH_DECODE_H
#define PATHGPT_KERNELS_PATH_DECODE_H

#include <stddef.h>

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n;            /* sequences */
    int H, d;         /* heads, head dim */
    int cap;          /* cache entries per (sequence, head) */
    int max_len;      /* max over b of pos[b] + 1: the key range the grid covers (host knows it) */
    float scale;      /* multiplies q.k */
    float gate_scale; /* multiplies G_t - G_j when g is given */
} PathDecodeDims;

size_t path_decode_scratch_floats(int n, int H, int d, int cap);

void path_decode_window(const GpuCtx *ctx, void *window, const void *w_up, const int *pos, int n, int C, int K);

void path_decode_attend(const GpuCtx *ctx, const PathDecodeDims *dims, const int *pos, float *k_cache,
                        void *v_cache, float *G_cache, const void *q, const void *k, const void *v, const float *w,
                        size_t w_stride, const float *beta, const float *g, float *scratch, void *o);

#ifdef __cplusplus
}
#endif
#endif
