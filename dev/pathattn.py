"""pathattn.py: a ctypes binding of the project's CUDA PaTH attention (kernels/path_attn.h) and of
its float64 CPU oracle (model/attn_ref.h), for benchmarks and comparisons with PyTorch and FLA on
the same tensors in one process. Build the library first: `make lib` (build/libpathgpt_cuda.so).

    op = PathAttn()                                   # binds to torch's current CUDA stream
    o, lse, qleft = op.forward(q, k, v, w, beta, g, cu_seqlens[, keep=True])
    dq, dk, dv, dw, dbeta, dg = op.backward(q, k, v, w, beta, g, cu_seqlens, o, lse, qleft, do[, kept=True])
    o64 = reference(q, k, v, w, beta, g, cu_seqlens, do)   # float64 oracle: o and all gradients

Layout (varlen, FLA's): q (N, Hq, d) bf16; k, v (N, H, d) bf16; w (N, H, d) and beta (N, H) fp32
or None (softmax attention); g (N, Hq) fp32 or None; cu_seqlens a list of ints [0, ..., N].
A dense batch [B, T, H, d] is the same memory as (B*T, H, d) with cu_seqlens [0, T, 2T, ...].
"""
import ctypes
import math
import os

import torch

# PATHGPT_LIB names another build of the library (e.g. a baseline, for an A/B comparison in one session)
_LIB_PATH = os.environ.get('PATHGPT_LIB') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'build',
                                                          'libpathgpt_cuda.so')


class GpuCtx(ctypes.Structure):
    _fields_ = [('device', ctypes.c_int), ('stream', ctypes.c_void_p), ('sm_count', ctypes.c_int),
                ('smem_optin', ctypes.c_size_t), ('sync_each_launch', ctypes.c_int)]


class AttnDims(ctypes.Structure):
    _fields_ = [('n_tokens', ctypes.c_int), ('n_seqs', ctypes.c_int), ('cu_seqlens', ctypes.POINTER(ctypes.c_int)),
                ('Hq', ctypes.c_int), ('H', ctypes.c_int), ('d', ctypes.c_int), ('scale', ctypes.c_float),
                ('gate_scale', ctypes.c_float)]


def _lib():
    lib = ctypes.CDLL(_LIB_PATH)
    vp, c = ctypes.c_void_p, ctypes.c_char_p
    lib.gpu_ctx_init.argtypes = [ctypes.POINTER(GpuCtx), ctypes.c_int, c, ctypes.c_size_t]
    lib.path_attn_create.argtypes = [ctypes.POINTER(GpuCtx)]
    lib.path_attn_create.restype = vp
    lib.path_attn_check.argtypes = [ctypes.POINTER(AttnDims), c, ctypes.c_size_t]
    lib.path_attn_forward.argtypes = [vp, ctypes.POINTER(AttnDims)] + [vp] * 10
    lib.path_attn_backward.argtypes = [vp, ctypes.POINTER(AttnDims)] + [vp] * 17
    lib.path_factors_create.restype = vp
    lib.attn_ref_forward.argtypes = [ctypes.POINTER(AttnDims)] + [vp] * 8
    lib.attn_ref_backward.argtypes = [ctypes.POINTER(AttnDims)] + [vp] * 13
    return lib


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _dims(q, k, cu_seqlens, gated_path):
    N, Hq, d = q.shape
    cu = (ctypes.c_int * len(cu_seqlens))(*cu_seqlens)
    scale = 1.0 / math.sqrt(d)
    dims = AttnDims(N, len(cu_seqlens) - 1, cu, Hq, k.shape[1], d, scale, scale if gated_path else 1.0)
    return dims, cu  # keep cu alive with dims


class PathAttn:
    """The CUDA kernels on torch's current stream of the current device."""

    def __init__(self):
        self.lib = _lib()
        self.ctx = GpuCtx()
        why = ctypes.create_string_buffer(256)
        if self.lib.gpu_ctx_init(ctypes.byref(self.ctx), torch.cuda.current_device(), why, 256):
            raise RuntimeError(why.value.decode())
        self.ctx.stream = torch.cuda.current_stream().cuda_stream
        self.handle = self.lib.path_attn_create(ctypes.byref(self.ctx))
        self.factors = self.lib.path_factors_create()  # what a forward with keep=True leaves for the backward

    def _check(self, dims):
        why = ctypes.create_string_buffer(256)
        if self.lib.path_attn_check(ctypes.byref(dims), why, 256):
            raise ValueError(why.value.decode())

    def forward(self, q, k, v, w, beta, g, cu_seqlens, keep=False):
        """keep: leave F1-F3's factors for the next backward(..., kept=True) of these inputs (as a model trains)."""
        dims, _cu = _dims(q, k, cu_seqlens, w is not None)
        self._check(dims)
        o = torch.empty_like(q)
        lse = torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
        qleft = torch.empty(q.shape, dtype=torch.float16, device=q.device)
        self.lib.path_attn_forward(self.handle, ctypes.byref(dims), _ptr(q), _ptr(k), _ptr(v), _ptr(w), _ptr(beta),
                                   _ptr(g), _ptr(o), _ptr(lse), _ptr(qleft), self.factors if keep else None)
        return o, lse, qleft

    def backward(self, q, k, v, w, beta, g, cu_seqlens, o, lse, qleft, do, kept=False):
        dims, _cu = _dims(q, k, cu_seqlens, w is not None)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dw = None if w is None else torch.empty_like(w)
        dbeta = None if beta is None else torch.empty_like(beta)
        dg = None if g is None else torch.empty_like(g)
        self.lib.path_attn_backward(self.handle, ctypes.byref(dims), _ptr(q), _ptr(k), _ptr(v), _ptr(w), _ptr(beta),
                                    _ptr(g), _ptr(o), _ptr(lse), _ptr(qleft), _ptr(do), _ptr(dq), _ptr(dk), _ptr(dv),
                                    _ptr(dw), _ptr(dbeta), _ptr(dg), self.factors if kept else None)
        return dq, dk, dv, dw, dbeta, dg


def reference(q, k, v, w, beta, g, cu_seqlens, do):
    """float64 oracle on the CPU (model/attn_ref.c, OpenMP over sequences and kv heads):
    returns o, dq, dk, dv, dw, dbeta, dg as float64 CPU tensors (None where not applicable)."""
    lib = _lib()
    c64 = lambda t: None if t is None else t.detach().to('cpu', torch.float64).contiguous()
    q, k, v, w, beta, g, do = map(c64, (q, k, v, w, beta, g, do))
    dims, _cu = _dims(q, k, cu_seqlens, w is not None)
    o = torch.empty_like(q)
    lse = torch.empty(q.shape[:2], dtype=torch.float64)
    lib.attn_ref_forward(ctypes.byref(dims), _ptr(q), _ptr(k), _ptr(v), _ptr(w), _ptr(beta), _ptr(g), _ptr(o), _ptr(lse))
    grads = [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
             None if w is None else torch.empty_like(w), None if beta is None else torch.empty_like(beta),
             None if g is None else torch.empty_like(g)]
    lib.attn_ref_backward(ctypes.byref(dims), _ptr(q), _ptr(k), _ptr(v), _ptr(w), _ptr(beta), _ptr(g), _ptr(do),
                          *[_ptr(x) for x in grads])
    return (o, *grads)
