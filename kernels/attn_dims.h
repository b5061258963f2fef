/* attn_dims.h: the shape of one attention call, shared by the CPU oracle (model/attn_ref.c)
 * and the CUDA kernels (kernels/path_attn.h). Plain C, no CUDA types.
 *
 * Tokens of all packed sequences lie end to end ("varlen", FLA's cu_seqlens layout with batch 1):
 * sequence s is tokens [cu_seqlens[s], cu_seqlens[s+1]). A dense batch of B rows of T tokens is
 * cu_seqlens = {0, T, 2T, ..., BT}; documents inside a row split it further. Nothing (attention,
 * Householder products, gate sums) crosses a sequence boundary.
 *
 * Per token t and head, arrays are laid out (N, heads, d), last index fastest:
 *   q (N, Hq, d)   k, v, w (N, H, d)   beta (N, H)   g (N, Hq)   o (N, Hq, d)   lse (N, Hq)
 * Query head hq reads key/value head hq / (Hq / H) (grouped heads; Hq == H is plain MHA).
 * Logits: z_ij = scale * s_ij + gate_scale * (G_i - G_j), G = per-sequence cumsum of g;
 * PaTH-FoX has gate_scale = scale (doc/DESIGN.md section 1), FoX has gate_scale = 1. */
#ifndef PATHGPT_KERNELS_ATTN_DIMS_H
#define PATHGPT_KERNELS_ATTN_DIMS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_tokens;           /* N: all tokens of all sequences */
    int n_seqs;             /* number of packed sequences, >= 1 */
    const int *cu_seqlens;  /* (n_seqs + 1,) host memory; cu[0] = 0, non-decreasing, cu[n_seqs] = N */
    int Hq;                 /* query heads */
    int H;                  /* key/value heads; H divides Hq */
    int d;                  /* head dim, also the value dim */
    float scale;            /* multiplies q.k; 1/sqrt(d) by convention */
    float gate_scale;       /* multiplies G_i - G_j when a gate is given */
} AttnDims;

/* 0 if dims are consistent; otherwise -1 and *why names the bad field (a static string). */
int attn_dims_check(const AttnDims *dims, const char **why);

#ifdef __cplusplus
}
#endif
#endif
