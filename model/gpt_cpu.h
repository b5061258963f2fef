/* gpt_cpu.h: the CPU reference model (model/gpt_cpu.c), the oracle the GPU model is tested against.
 * It implements model/gpt.h; this header exposes the concrete struct so tests can read parameters,
 * gradients, activations and logits by name (views follow the parameter table, params.h).
 *
 * Precision: fp32 throughout, except attention, which runs in the float64 oracle model/attn_ref.c
 * (inputs converted to double, the output converted back), and the decoding key cache (double, so
 * decoding matches the forward pass to fp32 rounding of the layers around attention).
 *
 * Layout: a batch of B rows of T tokens is N = B*T rows, row n = b*T + t. Per-layer activations
 * are stacked (L, capacity, ...) with capacity = B*T of gpt_create; PaTH and gate tensors are NULL
 * for attention types that lack them. Activation gradients live in one layer's worth of scratch
 * (ActivationGrads), reused layer by layer; parameter gradients accumulate until gpt_zero_grad.
 * Checked by test_gpt2pathattn.c. */
#ifndef PATHGPT_MODEL_GPT_CPU_H
#define PATHGPT_MODEL_GPT_CPU_H

#include <stddef.h>

#include "gpt.h"
#include "params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float *encoded;                    /* (N,C)    wte[token] (+ wpe[position] for learned) */
    float *ln1, *ln1_mean, *ln1_rstd;  /* (L,N,C), (L,N), (L,N) */
    float *qkv;                        /* (L,N,3C) q | k | v, before rope */
    float *w_low;                      /* (L,N,R)  PaTH: ln1 @ wdown^T */
    float *w_up;                       /* (L,N,C)  PaTH: w_low @ wup^T */
    float *w_conv;                     /* (L,N,C)  PaTH: causal depthwise conv of w_up, before SiLU */
    float *w;                          /* (L,N,C)  PaTH: silu(w_conv), unit norm per head */
    float *beta;                       /* (L,N,NH) PaTH: 2 sigmoid(ln1 @ betaw^T + betab) */
    float *gate;                       /* (L,N,NH) gated: logsigmoid(ln1 @ gatew^T + gateb) */
    float *atty;                       /* (L,N,C)  attention output, heads side by side */
    float *residual2;                  /* (L,N,C)  block input + attproj(atty) */
    float *ln2, *ln2_mean, *ln2_rstd;  /* (L,N,C), (L,N), (L,N) */
    float *fch, *fch_gelu;             /* (L,N,4C) */
    float *residual3;                  /* (L,N,C)  block output */
    float *lnf, *lnf_mean, *lnf_rstd;  /* (N,C), (N), (N) */
    float *logits;                     /* (N,Vp) */
    float *probs;                      /* (N,Vp)   softmax over the first V columns, 0 beyond */
    float *losses;                     /* (N)      cross-entropy, 0 where the target is < 0 */
    float *memory;
} ActivationTensors;

typedef struct {                       /* gradients of one layer's activations, N rows */
    float *dresidual;                  /* (N,C)    the residual stream, carried down the layers */
    float *dln;                        /* (N,C)    a layernorm output: lnf, then ln2 / ln1 per layer */
    float *datty;                      /* (N,C) */
    float *dqkv;                       /* (N,3C) */
    float *dfch, *dfch_gelu;           /* (N,4C) */
    float *dw;                         /* (N,C)    PaTH: of w, then (in place) of w_conv */
    float *dw_up;                      /* (N,C) */
    float *dw_low;                     /* (N,R) */
    float *dbeta;                      /* (N,NH)   of beta, then (in place) of its pre-activation */
    float *dgate;                      /* (N,NH)   of the gate, then (in place) of its pre-activation */
    float *dlogits;                    /* (N,Vp) */
    float *memory;
} ActivationGrads;

typedef struct {                       /* float64 arguments of attn_ref, layout (N,NH,d) = (N,C) */
    double *q, *k, *v, *w, *o;         /* (N,C)    q, k rotated for rope */
    double *dout, *dq, *dk, *dv, *dw;  /* (N,C) */
    double *beta, *gate, *lse;         /* (N,NH) */
    double *dbeta, *dgate;             /* (N,NH) */
    double *memory;
} AttnBuffers;

typedef struct {                       /* generation state, allocated by the first gpt_decode_begin */
    int n;                             /* sequences being decoded, <= B */
    int *len;                          /* (B)      tokens of each sequence's current document */
    double *k, *v;                     /* (L,B,NH,T,d) cached keys (PaTH: already multiplied by
                                          every later H) and values */
    double *G;                         /* (L,B,NH,T) gate cumsum G_j of each cached token */
    float *hist;                       /* (L,B,K-1,C) PaTH: the last K-1 w_up rows of the current
                                          document, oldest first, 0 before its start */
    double *z;                         /* (B,NH,T) scratch: one query's logits per sequence, head */
    ActivationTensors acts;            /* one token per sequence: capacity B rows */
    double *memory;
} DecodeCache;

struct Gpt {
    ModelConfig cfg;
    int B, T;                          /* largest batch, given to gpt_create */
    ParamSpec specs[NUM_PARAM_TENSORS];
    size_t num_params;
    size_t buffer_elems;               /* of params_memory, grads_memory: num_params, or n_padded
                                          (gpt_shard_optimizer; the padding is 0) */
    size_t moment_begin, moment_end;   /* m_memory, v_memory: AdamW moments of [begin, end), [0, num_params)
                                          unless gpt_shard_optimizer */
    float *params_memory, *grads_memory, *m_memory, *v_memory;
    ParameterTensors params, grads;    /* named views into params_memory / grads_memory */
    ActivationTensors acts;            /* of the last gpt_forward */
    ActivationGrads dacts;
    AttnBuffers attn;
    int batch_B, batch_T;              /* shape of the last gpt_forward; 0 before the first */
    int has_targets;                   /* whether it had targets (gpt_backward needs them) */
    int *inputs, *targets;             /* (N) its tokens */
    int *doc_start;                    /* (N) t of the first token of each token's document */
    int *pos;                          /* (N) position within the document: t - doc_start */
    int *cu_seqlens;                   /* (N+1) documents as attn_ref's packed sequences */
    int n_seqs;
    GptGradReady ready_fn;             /* gpt_set_grad_ready's callback, or NULL */
    void *ready_ctx;
    DecodeCache cache;
};

#ifdef __cplusplus
}
#endif
#endif
