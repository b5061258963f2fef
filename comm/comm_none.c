/* comm_none.c: comm.h's model backend for a GPU program built without NCCL: the model's buffers are in
 * device memory and nothing here can move them, so joining a transport is refused with the reason and
 * the program runs as one process (comm_init without a rendezvous never calls the backend).
 * checked by: tests/test_comm_gpu.cu (skips with this reason in a build without NCCL). */
#include <stdio.h>

#include "comm_internal.h"

static int none_init(Comm *c, char *why, size_t why_len) {
    snprintf(why, why_len, "rank %d: this GPU build has no NCCL (see make's NCCL line), so it runs one process; "
             "rebuild with NCCL (make WITH_NCCL=1, NCCL_HOME=... if it is not on the compiler's paths)", c->rank);
    return -1;
}

const CommModelBackend comm_model_backend = {"device memory, but no NCCL in this build", none_init, NULL, NULL, NULL,
                                             NULL, NULL};
