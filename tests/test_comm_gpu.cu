/* test_comm_gpu.cu: comm/comm.h's device-memory backend as linked into the GPU trainer (comm_nccl.c, or
 * comm_none.c in a build without NCCL), on the machine's first GPU.
 *   NCCL build, a GPU: a group of one joined over tcp:127.0.0.1 (so NCCL is set up, unlike world 1
 *     without a rendezvous); comm_allreduce_sum, comm_reduce_scatter_sum, comm_allgather on device
 *     memory, with the NULL stream and with a stream of the caller's, leave the values as they are (a
 *     sum over one rank) and the device where comm_init put it; comm_wait returns with the caller's
 *     stream idle; a local rank at the GPU count is refused naming both numbers.
 *   NCCL build, no GPU: skip.   No NCCL: joining is refused with the reason, no GPU needed.
 * Several GPUs need several processes: README, "Multiple processes and GPUs", gives the commands. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "../comm/comm.h"
#include "../common/util.h"
#include "../kernels/gpu.h"
#include "check.h"

#define N 4099 /* floats; odd, not a multiple of any NCCL chunk */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    socklen_t len = sizeof a;
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len))
        die("test_comm_gpu: no free port");
    close(fd);
    return ntohs(a.sin_port);
}

static int join_one(Comm **c, int local_rank, char *why, size_t len) {
    char rv[64];
    snprintf(rv, sizeof rv, "tcp:127.0.0.1:%d", free_port());
    CommConfig cc = {rv, 0, 1, local_rank, 10.0};
    return comm_init(c, &cc, why, len);
}

#ifdef PATHGPT_HAVE_NCCL
/* the three collectives on device buffer dev (N floats) with stream; 1 if the values survive */
static int collectives_keep_values(Comm *c, float *dev, const float *host, cudaStream_t stream) {
    float back[N];
    CUDA_CHECK(cudaMemcpy(dev, host, sizeof back, cudaMemcpyHostToDevice));
    comm_allreduce_sum(c, dev, N, stream);
    comm_reduce_scatter_sum(c, dev, N, stream);
    comm_allgather(c, dev, N, stream);
    if (stream) CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(back, dev, sizeof back, cudaMemcpyDeviceToHost));
    return memcmp(back, host, sizeof back) == 0;
}

static void test_nccl(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        check_skip("test_comm_gpu", "no CUDA device");
        return;
    }
    Comm *c;
    char why[1024];
    int ok = join_one(&c, 0, why, sizeof why) == 0;
    if (!check_true("nccl group of one: joins", ok, ok ? comm_describe(c) : why)) return;
    int dev_now = -1;
    CUDA_CHECK(cudaGetDevice(&dev_now));
    check_true("nccl: comm_init selected GPU <local rank>", dev_now == 0, "device 0");
    float host[N], *dev;
    for (int i = 0; i < N; i++) host[i] = 0.25f * (float)(i % 97) - 3.0f;
    CUDA_CHECK(cudaMalloc((void **)&dev, sizeof host));
    check_true("nccl: collectives, NULL stream", collectives_keep_values(c, dev, host, NULL), "values of one rank kept");
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    check_true("nccl: collectives, caller's stream", collectives_keep_values(c, dev, host, stream), "values of one rank kept");
    comm_allreduce_sum(c, dev, N, stream);
    comm_wait(c, stream);
    check_true("nccl: comm_wait leaves the stream idle", cudaStreamQuery(stream) == cudaSuccess,
               "cudaStreamQuery after an all-reduce queued on it");
    CUDA_CHECK(cudaStreamDestroy(stream));
    CUDA_CHECK(cudaFree(dev));
    comm_free(c);

    ok = join_one(&c, n_dev, why, sizeof why) == -1 && strstr(why, "but this machine has") != NULL;
    check_true("nccl: local rank beyond the GPUs refused", ok, "names the GPU count");
    if (!ok) printf("    reason: %s\n", why);
}
#else
static void test_none(void) {
    Comm *c;
    char why[1024] = "";
    int ok = join_one(&c, 0, why, sizeof why) == -1 && strstr(why, "this GPU build has no NCCL") != NULL;
    check_true("no NCCL: joining refused with the reason", ok, "comm_none.c's message");
    if (!ok) printf("    reason: %s\n", why);
}
#endif

int main(void) {
    util_set_progname("test_comm_gpu");
#ifdef PATHGPT_HAVE_NCCL
    test_nccl();
#else
    test_none();
#endif
    return check_finish();
}
