/* documents.h: the documents of a batch (model/config.h): position t of a row starts a document if
 * t == 0 or its token is doc_token (doc_token >= 0). Shared by the CPU and GPU models. */
#ifndef PATHGPT_MODEL_DOCUMENTS_H
#define PATHGPT_MODEL_DOCUMENTS_H

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* inputs (B, T) -> doc_start (B*T): the position in its row where each token's document starts;
 * pos (B*T): the position within the document; cu_seqlens (up to B*T + 1): the documents as packed
 * sequences of the B*T tokens. Returns their number. */
int batch_documents(const ModelConfig *cfg, const int *inputs, int B, int T, int *doc_start, int *pos, int *cu_seqlens);

#ifdef __cplusplus
}
#endif
#endif
