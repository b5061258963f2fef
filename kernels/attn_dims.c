/* attn_dims.c: validation of AttnDims, the one boundary check before any attention call
 * (CPU oracle or CUDA kernels). Kernels assume dims passed this check. */
#include "attn_dims.h"
#include <stddef.h>

int attn_dims_check(const AttnDims *dims, const char **why) {
    const char *bad = NULL;
    if (dims->n_tokens < 0) bad = "n_tokens is negative";
    else if (dims->n_seqs < 1) bad = "n_seqs must be at least 1";
    else if (dims->cu_seqlens == NULL) bad = "cu_seqlens is NULL";
    else if (dims->H < 1 || dims->Hq < 1) bad = "head counts must be positive";
    else if (dims->Hq % dims->H != 0) bad = "H (key/value heads) must divide Hq (query heads)";
    else if (dims->d < 1) bad = "head dim d must be positive";
    else if (dims->cu_seqlens[0] != 0) bad = "cu_seqlens[0] must be 0";
    else if (dims->cu_seqlens[dims->n_seqs] != dims->n_tokens) bad = "cu_seqlens[n_seqs] must equal n_tokens";
    else {
        for (int s = 0; s < dims->n_seqs; s++) {
            if (dims->cu_seqlens[s + 1] < dims->cu_seqlens[s]) { bad = "cu_seqlens must be non-decreasing"; break; }
        }
    }
    if (why) *why = bad;
    return bad ? -1 : 0;
}
