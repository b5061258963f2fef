/* attn_ref.h: double-precision attention oracle on the CPU (PaTH, PaTH-FoX, FoX, plain softmax).
 * The math is in attn_ref.c; shapes and layout in kernels/attn_dims.h. */
#ifndef PATHGPT_MODEL_ATTN_REF_H
#define PATHGPT_MODEL_ATTN_REF_H

#include "../kernels/attn_dims.h"

#ifdef __cplusplus
extern "C" {
#endif

/* o (N,Hq,d), lse (N,Hq) from q (N,Hq,d), k, v (N,H,d); w (N,H,d) unit rows and beta (N,H), or both
 * NULL for no Householder factors (softmax attention); g (N,Hq) log forget gate or NULL. */
void attn_ref_forward(const AttnDims *dims, const double *q, const double *k, const double *v,
                      const double *w, const double *beta, const double *g, double *o, double *lse);

/* Gradients for upstream dout (N,Hq,d). Every gradient is overwritten; dw, dbeta must be NULL when
 * w is, dg when g is. */
void attn_ref_backward(const AttnDims *dims, const double *q, const double *k, const double *v,
                       const double *w, const double *beta, const double *g, const double *dout,
                       double *dq, double *dk, double *dv, double *dw, double *dbeta, double *dg);

#ifdef __cplusplus
}
#endif
#endif
