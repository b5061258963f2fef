/* matmul.cu: see matmul.h. The row-major products map onto column-major cuBLASLt calls
 * D (m x n, ld ldd) = op(A) op(B) [+ beta C] [+ bias], a row-major (R x S) array being column-major (S x R):
 *   forward          out^T (OC x N)  = W^T-view: op(A) = A^T, A = W stored (C x OC);   B = inp^T (C x N)
 *   backward_input   dinp^T (C x N)  = A = W stored (C x OC);                          B = dout^T (OC x N)
 *   backward_weight  dW^T (C x OC)   = A = inp^T (C x N);       op(B) = B^T, B = dout^T stored (OC x N)
 * layout: error check, plans (key, make, cache), the generic gemm, then the exported functions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>

#include "common.cuh"
#include "matmul.h"

#define MATMUL_WORKSPACE_BYTES ((size_t)32 << 20) /* what cuBLAS recommends for Hopper */
#define MATMUL_MAX_PLANS 256                      /* a model has a few dozen shapes per batch shape */

static void cublas_check(cublasStatus_t status, const char *call, const char *file, int line) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "error: cuBLASLt call %s failed at %s:%d: %s\n", call, file, line,
            cublasLtGetStatusString(status));
    exit(EXIT_FAILURE);
}
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)

struct GemmKey { /* everything the algorithm choice depends on; ints only, so memcmp compares it */
    int trans_a, trans_b, m, n, k, lda, ldb, ldd, d_type, has_bias;
    unsigned align_a, align_b, align_c, align_d, align_bias; /* bytes, powers of two up to 256 */
};

struct Plan {
    GemmKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d; /* C shares D's layout */
    cublasLtMatmulAlgo_t algo;
};

struct Matmul {
    GpuCtx ctx;
    cublasLtHandle_t lt;
    void *workspace;
    Plan plans[MATMUL_MAX_PLANS];
    int n_plans;
};

/* largest power of two up to 256 dividing the address (cuBLASLt's default assumption is 256) */
static unsigned alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}

static const char *type_name(int t) { return t == MATMUL_F32 ? "f32" : "bf16"; }

static void plan_free(Plan *p) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->d));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
}

static void make_plan(Matmul *mm, Plan *p, const GemmKey *key, const void *bias) {
    p->key = *key;
    cublasOperation_t op_a = key->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = key->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    if (key->has_bias) {
        uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
        int32_t bias_type = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                    sizeof bias_type));
        /* the heuristic reads the pointer's alignment */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    cudaDataType d_type = key->d_type == MATMUL_F32 ? CUDA_R_32F : CUDA_R_16BF;
    int m = key->m, n = key->n, k = key->k;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, key->trans_a ? k : m, key->trans_a ? m : k, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, key->trans_b ? n : k, key->trans_b ? k : n, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, d_type, m, n, key->ldd));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = MATMUL_WORKSPACE_BYTES;
    uint32_t al[4] = {key->align_a, key->align_b, key->align_c, key->align_d};
    cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    for (int i = 0; i < 4; i++)
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &al[i], sizeof al[i]));
    cublasLtMatmulHeuristicResult_t result;
    int count = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(mm->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &count);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS || count == 0) {
        fprintf(stderr,
                "error: matmul: cuBLASLt has no algorithm for m %d n %d k %d (op A %c, op B %c, ld %d %d %d, "
                "D %s, bias %d, alignment A %u B %u C %u D %u bias %u bytes): %s\n",
                m, n, k, key->trans_a ? 'T' : 'N', key->trans_b ? 'T' : 'N', key->lda, key->ldb, key->ldd,
                type_name(key->d_type), key->has_bias, key->align_a, key->align_b, key->align_c, key->align_d,
                key->align_bias, cublasLtGetStatusString(st));
        exit(EXIT_FAILURE);
    }
    p->algo = result.algo;
}

static Plan *get_plan(Matmul *mm, const GemmKey *key, const void *bias) {
    for (int i = 0; i < mm->n_plans; i++)
        if (memcmp(&mm->plans[i].key, key, sizeof *key) == 0) return &mm->plans[i];
    if (mm->n_plans == MATMUL_MAX_PLANS) { /* many batch shapes (decoding): start over */
        for (int i = 0; i < mm->n_plans; i++) plan_free(&mm->plans[i]);
        mm->n_plans = 0;
    }
    Plan *p = &mm->plans[mm->n_plans++];
    make_plan(mm, p, key, bias);
    return p;
}

/* D (m x n, column-major, ld ldd) = op(A) op(B) + beta C + bias; C NULL means beta = 0 */
static void gemm(Matmul *mm, int trans_a, int trans_b, int m, int n, int k, const void *A, int lda, const void *B,
                 int ldb, void *D, int ldd, MatmulType d_type, const void *C, const void *bias) {
    if (bias && alignment(bias) < 16) {
        fprintf(stderr, "error: matmul: bias pointer %p is not 16-byte aligned (cuBLASLt's bias epilogue needs it)\n",
                bias);
        exit(EXIT_FAILURE);
    }
    GemmKey key;
    memset(&key, 0, sizeof key);
    key.trans_a = trans_a;
    key.trans_b = trans_b;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldd = ldd;
    key.d_type = d_type;
    key.has_bias = bias != NULL;
    key.align_a = alignment(A);
    key.align_b = alignment(B);
    key.align_c = alignment(C ? C : D);
    key.align_d = alignment(D);
    key.align_bias = bias ? alignment(bias) : 0;
    Plan *p = get_plan(mm, &key, bias);
    if (bias) CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    float alpha = 1.0f, beta = C ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(mm->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, C ? C : D, p->d, D, p->d, &p->algo,
                                mm->workspace, MATMUL_WORKSPACE_BYTES, mm->ctx.stream));
    LAUNCH_CHECK(&mm->ctx, "cublasLtMatmul");
}

Matmul *matmul_create(const GpuCtx *ctx) {
    Matmul *mm = (Matmul *)calloc(1, sizeof(Matmul));
    if (!mm) {
        fprintf(stderr, "error: matmul_create: out of host memory\n");
        exit(EXIT_FAILURE);
    }
    mm->ctx = *ctx;
    CUBLAS_CHECK(cublasLtCreate(&mm->lt));
    CUDA_CHECK(cudaMalloc(&mm->workspace, MATMUL_WORKSPACE_BYTES));
    return mm;
}

void matmul_free(Matmul *mm) {
    if (!mm) return;
    for (int i = 0; i < mm->n_plans; i++) plan_free(&mm->plans[i]);
    CUDA_CHECK(cudaFree(mm->workspace));
    CUBLAS_CHECK(cublasLtDestroy(mm->lt));
    free(mm);
}

void matmul_forward(Matmul *mm, void *out, MatmulType out_type, const void *inp, const void *weight, const void *bias,
                    const void *add, int N, int C, int OC) {
    gemm(mm, 1, 0, OC, N, C, weight, C, inp, C, out, OC, out_type, add, bias);
}

void matmul_backward_input(Matmul *mm, void *dinp, MatmulType dinp_type, int accumulate, const void *dout,
                           const void *weight, int N, int C, int OC) {
    gemm(mm, 0, 0, C, N, OC, weight, C, dout, OC, dinp, C, dinp_type, accumulate ? dinp : NULL, NULL);
}

void matmul_backward_weight(Matmul *mm, float *dweight, const void *dout, const void *inp, int N, int C, int OC) {
    gemm(mm, 0, 1, C, OC, N, inp, C, dout, OC, dweight, C, MATMUL_F32, dweight, NULL);
}

namespace {
template <int W> /* W columns per call: 8 (one 16-byte load) when the rows allow it, else 1 */
struct BiasGrad {
    static constexpr int WIDTH = W;
    const bf16 *dout;
    int OC;
    __device__ void operator()(int n, int c, float *v) const {
        const bf16 *p = dout + (size_t)n * OC + c;
        if constexpr (W == 8) bf16x8_unpack(*reinterpret_cast<const uint4 *>(p), v);
        else v[0] = __bfloat162float(*p);
    }
};
}  // namespace

void matmul_backward_bias(Matmul *mm, float *dbias, const void *dout, int N, int OC, float *scratch) {
    if (OC % 8 == 0 && (uintptr_t)dout % 16 == 0) {
        BiasGrad<8> f = {(const bf16 *)dout, OC};
        colsum_partials(&mm->ctx, f, N, OC, scratch, "colsum_partials_kernel<BiasGrad<8>>");
    } else {
        BiasGrad<1> f = {(const bf16 *)dout, OC};
        colsum_partials(&mm->ctx, f, N, OC, scratch, "colsum_partials_kernel<BiasGrad<1>>");
    }
    colsum_add(&mm->ctx, scratch, N, OC, OC, dbias);
}
