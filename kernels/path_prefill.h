/* path_prefill.h: key-cache prefill. One layer's decoding cache (kernels/path_decode.h's layout) filled from
 * a prompt's activations, as the forward computed them, in one pass linear in the prompt's length
 * (doc/DESIGN.md section 1, "Decoding with a key cache"; doc/PATH_ALGORITHM.md section 8); every attention
 * type of model/config.h (PaTH with w and beta, a forget gate with g, neither for plain softmax).
 *
 * Sequence b's prompt is rows b T .. b T + T - 1 of the activations. Its last document is its last
 * len = len[b] rows (document position j at row b T + T - len + j); the cache gets that document, exactly
 * what len decoding steps (path_decode.h) leave, so the next step continues at position len:
 *   k_cache_j = H_{len-1} .. H_{j+1} k_j  (PaTH; k_j otherwise),  v_cache_j = v_j,  G_j = g_0 + .. + g_j
 * for j < len, per head. PaTH, per (sequence, head): walk j = len-1 down to 0 keeping the f32 d x d suffix
 * product M = H_{len-1} .. H_{j+1} (M = I at j = len-1):
 *   k_cache_j = M k_j;   then M <- M H_j = M - beta_j (M w_j) w_j^T
 * O(len d^2) per (sequence, head), O(d^2) state: no T x T work.
 * The conv windows (path_decode_window's state after position len-1): the document's last K rows of w_up,
 * zeros before its start:
 *   window[b, k] = w_up[row of position len-K+k]  if len-K+k >= 0, else 0      (k < K)
 *
 * Shapes (one layer; H heads of dim d, C = H d; cap = the cache's tokens per sequence and head):
 *   len (n) int32 device, 1 <= len[b] <= min(T, cap);  k, v (n T, H, d) bf16 (k rotated for rope);
 *   w (n T, H, d) f32 unit rows per head or NULL;  beta (n T, H) f32 or NULL;  g (n T, H) f32 or NULL
 *   k_cache (n,H,cap,d) f32, v_cache (n,H,cap,d) bf16, G_cache (n,H,cap) f32 (NULL without a gate):
 *   entries j < len written;  window (n,K,C) bf16, w_up (n T, C) bf16
 * Precision: M and the keys in f32 (the cache's own precision); the gate sums by a warp scan in f32.
 * Launch: cache: one block per (sequence, head) of 4 d threads (128, 256, 512): thread (i, p) holds the
 * d/4 entries M[i, p + 4 m] (m < d/4) of row i in registers; the row's two dot products (M w_j)_i and
 * (M k_j)_i meet by shuffles over its 4 threads, so M needs no synchronisation; w, k and beta are staged
 * in shared memory 32 tokens at a time. The same block copies v (and k without PaTH) and scans the gate
 * (warp 0). Window: one thread per (sequence, row, channel).
 * Limits: d in {32, 64, 128}. Checked by tests/test_gpt_gpu.cu (prefill then decoding against the full
 * forward, every attention type; the prefill's keys against those of token-by-token decoding steps). */
#ifndef PATHGPT_KERNELS_PATH_PREFILL_H
#define PATHGPT_KERNELS_PATH_PREFILL_H

#include "gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n, T; /* sequences; prompt rows per sequence */
    int H, d; /* heads, head dim */
    int cap;  /* cache entries per (sequence, head) */
} PathPrefillDims;

void path_prefill_cache(const GpuCtx *ctx, const PathPrefillDims *dims, const int *len, float *k_cache,
                        void *v_cache, float *G_cache, const void *k, const void *v, const float *w,
                        const float *beta, const float *g);

void path_prefill_window(const GpuCtx *ctx, const PathPrefillDims *dims, void *window, const void *w_up,
                         const int *len, int K);

#ifdef __cplusplus
}
#endif
#endif
