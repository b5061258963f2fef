"""bench_path_attn.py: PaTH attention speed and accuracy, side by side on the same GPU and inputs:
the project's CUDA kernels (dev/pathattn.py over `make lib`), FLA's Triton parallel_path_attn and
PyTorch SDPA (flash, causal), at every shape of doc/DESIGN.md section 6, with and without gate.

    make lib && python3 dev/bench_path_attn.py [--fla DIR] [--tsv] [--shapes 0,1] [--no-accuracy] [--softmax]
                                               [--softmax-only] [--profile N]

FLA is optional: its `fla/` package must be importable (put the folder holding fla/ on --fla;
never commit it). Timing: triton.testing.do_bench, median (it flushes L2 between runs).
One line per configuration:  shape | gate | ours fwd / fwd+bwd ms | FLA ... (ratio) | SDPA ... (ratio)
--softmax adds, per shape, our attention without Householder factors (the softmax baselines) against
SDPA, which computes the same thing; --softmax-only times that alone (--profile then profiles it).
Accuracy: relative RMS against the float64 oracle (model/attn_ref.c) of o and every gradient,
ours beside FLA's, on a smaller shape (the oracle is O(T^2 d) on the CPU).
"""
import argparse
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pathattn import PathAttn, reference  # noqa: E402

SHAPES = [(8, 1024, 12, 64), (4, 2048, 12, 64), (2, 4096, 12, 64), (1, 8192, 12, 64), (2, 4096, 16, 128),
          (1, 16384, 16, 64)]


def inputs(B, T, H, d, gate, seed=0, requires_grad=False):
    gen = torch.Generator(device='cuda').manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, device='cuda')
    q, k, v = (rn(B, T, H, d).bfloat16() for _ in range(3))
    w = F.normalize(rn(B, T, H, d), dim=-1)
    beta = 2 * torch.rand(B, T, H, generator=gen, device='cuda')
    g = torch.log(0.95 + 0.05 * torch.rand(B, T, H, generator=gen, device='cuda')) if gate else None
    do = rn(B, T, H, d).bfloat16()
    ts = [q, k, v, w, beta, g]
    if requires_grad:
        ts = [None if t is None else t.requires_grad_() for t in ts]
    return ts, do


def bench(fn, grad_to_none=None):
    from triton.testing import do_bench
    return do_bench(fn, warmup=50, rep=300, grad_to_none=grad_to_none, return_mode='median')


def ours_fns(op, B, T, H, d, gate, path=True):
    (q, k, v, w, beta, g), do = inputs(B, T, H, d, gate)
    if not path:  # plain softmax (FoX with a gate): the kernels of kernels/path_attn_flash.cu
        w = beta = None
    flat = lambda t: None if t is None else t.reshape(B * T, *t.shape[2:])
    q, k, v, w, beta, g, do = map(flat, (q, k, v, w, beta, g, do))
    cu = [i * T for i in range(B + 1)]

    def fwd():
        return op.forward(q, k, v, w, beta, g, cu)

    def fwdbwd():  # as a model trains: the forward keeps its factors for the backward
        o, lse, ql = op.forward(q, k, v, w, beta, g, cu, keep=True)
        return op.backward(q, k, v, w, beta, g, cu, o, lse, ql, do, kept=True)
    return fwd, fwdbwd


def fla_fns(fla_attn, B, T, H, d, gate):
    (q, k, v, w, beta, g), do = inputs(B, T, H, d, gate, requires_grad=True)
    leaves = [t for t in (q, k, v, w, beta, g) if t is not None]

    def fwd():
        with torch.no_grad():
            return fla_attn(q, k, v, w, beta, g)[0]

    def fwdbwd():
        fla_attn(q, k, v, w, beta, g)[0].backward(do)
    return fwd, fwdbwd, leaves


def sdpa_fns(B, T, H, d):
    (q, k, v, _, _, _), do = inputs(B, T, H, d, False, requires_grad=True)
    qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
    dot = do.transpose(1, 2)

    def fwd():
        with torch.no_grad(), torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)

    def fwdbwd():
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).backward(dot)
    return fwd, fwdbwd, [qt, kt, vt]


def rel_rms(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


def accuracy(op, fla_attn, B, T, H, d, gate):
    (q, k, v, w, beta, g), do = inputs(B, T, H, d, gate, seed=1)
    flat = lambda t: None if t is None else t.reshape(B * T, *t.shape[2:])
    cu = [i * T for i in range(B + 1)]
    fq, fk, fv, fw, fb, fg, fdo = map(flat, (q, k, v, w, beta, g, do))
    ref = reference(fq, fk, fv, fw, fb, fg, cu, fdo)
    o, lse, ql = op.forward(fq, fk, fv, fw, fb, fg, cu, keep=True)
    ours = (o,) + op.backward(fq, fk, fv, fw, fb, fg, cu, o, lse, ql, fdo, kept=True)
    names = ['o', 'dq', 'dk', 'dv', 'dw', 'dbeta', 'dg']
    rows = {n: [rel_rms(x, r)] for n, x, r in zip(names, ours, ref) if r is not None}
    if fla_attn is not None:
        leaves = [None if t is None else t.detach().clone().requires_grad_() for t in (q, k, v, w, beta, g)]
        fo = fla_attn(*leaves)[0]
        fo.backward(do)
        fl = [fo] + [None if t is None else t.grad for t in leaves]
        for n, x, r in zip(names, fl, ref):
            if r is not None:
                rows[n].append(rel_rms(flat(x), r))
    return rows


def profile(op, B, T, H, d, path=True):
    """Per-kernel CUDA time of one forward+backward (gate on for PaTH, off for softmax), from torch.profiler."""
    _, fwdbwd = ours_fns(op, B, T, H, d, path, path)
    fwdbwd()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fwdbwd()
        torch.cuda.synchronize()
    print(f'# profile {"path" if path else "softmax"} B{B} T{T} H{H} d{d} gate {int(path)}, 5 fwd+bwd')
    print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=20))


def softmax_line(op, B, T, H, d, sdpa=None):
    """Our attention without Householder factors against SDPA (timed here unless given)."""
    if sdpa is None:
        sfwd, sfwdbwd, sleaves = sdpa_fns(B, T, H, d)
        sdpa = (bench(sfwd), bench(sfwdbwd, grad_to_none=sleaves))
    sm = tuple(bench(f) for f in ours_fns(op, B, T, H, d, False, path=False))
    shape = f'B{B} T{T} H{H} d{d}'
    print(f'softmax   | {shape:20s} | ours {sm[0]:6.3f} / {sm[1]:6.3f} ms | SDPA {sdpa[0]:6.3f} / '
          f'{sdpa[1]:6.3f} ms (x{sm[0] / sdpa[0]:.2f} / x{sm[1] / sdpa[1]:.2f})', flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--fla', default=None, help='folder that holds the fla/ package')
    ap.add_argument('--tsv', action='store_true')
    ap.add_argument('--shapes', default=None, help='comma-separated indices into the shape list')
    ap.add_argument('--no-accuracy', action='store_true')
    ap.add_argument('--profile', default=None, help='index of a shape: per-kernel CUDA times of ours, fwd+bwd, gate on')
    ap.add_argument('--softmax', action='store_true', help='also time our plain softmax attention against SDPA')
    ap.add_argument('--softmax-only', action='store_true', help='time only our plain softmax attention against SDPA')
    args = ap.parse_args()
    fla_attn = None
    if args.fla:
        sys.path.insert(0, args.fla)
        from fla.ops.path_attn.parallel import parallel_path_attn
        fla_attn = parallel_path_attn
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip() or '?'
    gpu = torch.cuda.get_device_name()
    print(f'# {gpu} | commit {commit} | torch {torch.__version__}')
    op = PathAttn()
    if args.profile is not None:
        profile(op, *SHAPES[int(args.profile)], path=not args.softmax_only)
    shapes = SHAPES if args.shapes is None else [SHAPES[int(i)] for i in args.shapes.split(',')]
    for B, T, H, d in shapes:
        if args.softmax_only:
            softmax_line(op, B, T, H, d)
            continue
        for gate in (False, True):
            fwd, fwdbwd = ours_fns(op, B, T, H, d, gate)
            ours = (bench(fwd), bench(fwdbwd))
            fla = (float('nan'), float('nan'))
            if fla_attn is not None:
                ffwd, ffwdbwd, leaves = fla_fns(fla_attn, B, T, H, d, gate)
                fla = (bench(ffwd), bench(ffwdbwd, grad_to_none=leaves))
            sfwd, sfwdbwd, sleaves = sdpa_fns(B, T, H, d)
            sdpa = (bench(sfwd), bench(sfwdbwd, grad_to_none=sleaves))
            shape = f'B{B} T{T} H{H} d{d}'
            if args.softmax and not gate:
                softmax_line(op, B, T, H, d, sdpa)
            if args.tsv:
                print('\t'.join(map(str, [shape, int(gate), *ours, *fla, *sdpa, gpu, commit])))
            else:
                print(f'path_attn | {shape:20s} | gate {int(gate)} | ours {ours[0]:6.3f} / {ours[1]:6.3f} ms | '
                      f'FLA {fla[0]:6.3f} / {fla[1]:6.3f} ms (x{ours[0] / fla[0]:.2f} / x{ours[1] / fla[1]:.2f}) | '
                      f'SDPA {sdpa[0]:6.3f} / {sdpa[1]:6.3f} ms (x{ours[0] / sdpa[0]:.2f} / x{ours[1] / sdpa[1]:.2f})',
                      flush=True)
    if not args.no_accuracy and not args.softmax_only:
        for gate in (False, True):
            rows = accuracy(op, fla_attn, 1, 2048, 2, 64, gate)
            print(f'accuracy B1 T2048 H2 d64 gate {int(gate)}: rel RMS vs float64, ours' +
                  (' / FLA' if fla_attn else '') + ': ' +
                  ', '.join(f'{n} ' + ' / '.join(f'{x:.1e}' for x in v) for n, v in rows.items()), flush=True)


if __name__ == '__main__':
    main()
