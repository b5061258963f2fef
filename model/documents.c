/* documents.c: see documents.h. */
#include "documents.h"

int batch_documents(const ModelConfig *cfg, const int *inputs, int B, int T, int *doc_start, int *pos, int *cu_seqlens) {
    int doc = cfg->doc_token, start = 0, n_seqs = 0;
    for (int n = 0; n < B * T; n++) {
        int t = n % T;
        if (t == 0 || (doc >= 0 && inputs[n] == doc)) {
            start = t;
            cu_seqlens[n_seqs++] = n;
        }
        doc_start[n] = start;
        pos[n] = t - start;
    }
    cu_seqlens[n_seqs] = B * T;
    return n_seqs;
}
