#!/usr/bin/env python3
"""
bench_gpt.py -- whole-model training throughput (issue 9): tokens/s, ms/step, MFU and GPU memory of our
trainer (./train) and of the same model in PyTorch, at the GPT-2 124M shape (12 layers, 12 heads, width
768, T 1024, vocab 50257 padded to 50304), per attention type and batch size, in one run on one GPU.

WHAT RUNS
    ours     ./train on a random-token llm.c shard written to a temporary folder (tokens < 50257),
             --steps W+N, no evaluation or sampling; the median tok/s of its step lines over the last N
             steps (after W warm-up steps) is reported, ms/step = B T / that. Memory: the peak of
             nvidia-smi's memory.used on GPU 0 while it runs, minus the value before it started
             (CUDA context, cuBLASLt workspace and attention scratch included). A run that dies is
             reported with its last error line (e.g. out of GPU memory). These rows run first, before
             this process touches the GPU.
    PyTorch  the same architecture (doc/DESIGN.md section 3; dev/gpt_ref.py is its float64 twin and
             supplies the parameter table), f32 master weights, bf16 autocast, fused AdamW (betas 0.9,
             0.999, weight decay 0.1 on the table's decay tensors, train.c's defaults), gradient
             clipping at norm 1 (train.c's --clip), constant learning rate (a schedule costs nothing
             measurable), random tokens, torch.compile of the whole model unless --no-compile.
             Attention: learned -> wpe + F.scaled_dot_product_attention(is_causal=True);
             path, path-fox -> FLA's Triton op fla.ops.path_attn.parallel.parallel_path_attn (it
             carries @torch.compiler.disable, so compiled models run it eagerly between graphs).
             Per step: forward + backward + clip + AdamW, synchronised; median of N steps after W.
             Memory: torch.cuda.max_memory_allocated over the row (warm-up and compilation included).
    check    before timing, each attention type's PyTorch model runs a small config (2 layers, 2 heads,
             width 128, T 208, dev/gpt_ref.py's init_params) as it will be timed (bf16 autocast, the same
             attention op; float64 with --device cpu), and its logits are compared with dev/gpt_ref.py's
             forward in float64 on the CPU: relative RMS against a bar (CHECK_BAR). A failure marks that
             attention's rows; they are still timed.

MFU = F x tokens/s / peak, peak = --peak-tflops (989: H100 SXM bf16 dense), per GPU.
    F = 6 N_mm + 6 L C T  training FLOPs per token, model_config_flops_per_token (model/config.h):
    N_mm = L (12 C^2 [+ PaTH 2 R C + K C + NH C] [+ gate NH C]) + Vp C (the tied LM head); embeddings,
    layernorms, biases not counted; attention 6 L C T = causal q k^T and att v, forward + backward;
    PaTH's Householder work counted as plain attention. GPT-2 124M, T 1024: learned 798.0 MFLOPs per
    token, path 802.4, path-fox 803.1 (llm.c's 6 N + 6 L C T, all N parameters: 803.5).

USAGE
    make train && python3 dev/bench_gpt.py --fla .          (on the GPU machine; FLA's fla/ in the repo root)
    python3 dev/bench_gpt.py --attn learned --batch 32 --no-ours
    python3 dev/bench_gpt.py --device cpu --tiny --no-ours  (this machine: the PyTorch path on tiny shapes)
    python3 dev/bench_gpt.py --device cpu --tiny --train ./train_cpu   (also our CPU trainer's parsing)
Options: --attn LIST (path,path-fox,learned), --batch LIST (32,64; tiny: 2,4), --steps N (10),
    --warmup W (3), --no-compile, --no-ours, --no-torch, --no-check, --fla DIR (put DIR, the folder that
    holds fla/, on sys.path), --train PATH (./train), --peak-tflops X (989), --device cuda|cpu, --tiny
    (2 layers, 2 heads, width 64, T 64, vocab 300: tests the logic, not the speed).
Output: progress lines, then one table (markdown), GPU, commit and torch version in its header.
"""

import argparse
import gc
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_ref  # noqa: E402  (the parameter table, the float64 forward and PaTH scores)

ATTNS = ("path", "path-fox", "learned")  # what the PyTorch model supports (fox, rope, nope: not yet)
GPT2 = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, T=1024)
TINY = dict(n_layer=2, n_head=2, n_embd=64, vocab_size=300, T=64)
# The check's config: head dim 64 as GPT-2's; T a multiple of 16 like 1024 (Triton specialises integer
# arguments on divisibility by 16, so the kernels compiled here serve the timed runs too) but not of FLA's
# 64- and 128-token blocks.
CHECK = dict(n_layer=2, n_head=2, n_embd=128, vocab_size=300, T=208, B=2)
# Bars of the check: CPU float64 on both sides, only summation order differs; GPU as timed (f32 weights, bf16
# autocast, FLA's bf16 kernels): 5e-3 measured with bf16 autocast on the CPU, while the smallest wiring
# errors tried there (beta halved, w one token late, gate unscaled) give 4.3e-2, 5.3e-2 and 0.38.
CHECK_BAR = {"float64": 1e-10, "bf16 autocast": 2e-2}
GLOBAL = ("wte", "wpe", "lnfw", "lnfb")  # the table's tensors without a leading layer axis
SHARD_MAGIC, SHARD_VERSION = 20240520, 1
OURS_TIMEOUT_S = 600  # a whole ./train run, start-up included; GPT-2 124M takes well under a minute
STEP_LINE = re.compile(r"^step (\d+)/(\d+) \|.*\| ([\d.]+) ms \| ([\d.]+)([kM]) tok/s(?: \| MFU ([\d.]+)%)?")


def model_config(shape, attn):
    """dev/gpt_ref.py's config dict (its param_table and forward read it) for a shape and attention type."""
    V = shape["vocab_size"]
    return dict(max_seq_len=shape["T"], vocab_size=V, padded_vocab_size=(V + 127) // 128 * 128,
                n_layer=shape["n_layer"], n_head=shape["n_head"], n_embd=shape["n_embd"], w_rank=32,
                conv_size=3, rope_theta=10000.0, attn=attn, doc_token=-1)


def flops_per_token(c, T):
    """model_config_flops_per_token of model/config.c (the formula in this file's top comment)."""
    L, C, NH, R, K = c["n_layer"], c["n_embd"], c["n_head"], c["w_rank"], c["conv_size"]
    per_layer = 12 * C * C
    if c["attn"] in ("path", "path-fox"):
        per_layer += 2 * R * C + C * K + NH * C
    if c["attn"] in ("path-fox", "fox"):
        per_layer += NH * C
    return 6.0 * (L * per_layer + c["padded_vocab_size"] * C) + 6.0 * L * C * T


# ---------------------------------------------------------------------------------------------
# the model in PyTorch: dev/gpt_ref.py's forward, with layers as modules and fused attention

def path_attn_reference(q, k, v, w, beta, g, scale):
    """FLA's parallel_path_attn contract (q, k, v, w (B, T, H, d); beta, g (B, T, H); returns o (B, T, H, d))
    through dev/gpt_ref.py's path_scores: O(T^2 d) on the CPU, in w's dtype. For --device cpu and checks."""
    tr = lambda t: t.transpose(1, 2)  # (B, T, H, ...) <-> (B, H, T, ...)
    dt = w.dtype
    s = gpt_ref.path_scores(tr(q).to(dt), tr(k).to(dt), tr(w), tr(beta))
    z = scale * s
    if g is not None:  # path-fox: the gate is scaled too (doc/DESIGN.md section 1)
        G = torch.cumsum(tr(g), dim=-1)
        z = z + scale * (G[..., :, None] - G[..., None, :])
    T = q.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = torch.softmax(z.masked_fill(~causal, float("-inf")), dim=-1)
    return tr(att @ tr(v).to(dt)).to(v.dtype), None


def causal_attention_reference(q, k, v, is_causal=True):
    """F.scaled_dot_product_attention's causal case for torch < 2 (no SDPA there); (B, H, T, d)."""
    T = q.shape[-2]
    z = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(z.masked_fill(~causal, float("-inf")), dim=-1) @ v


class Tensors(nn.Module):
    """named parameters as attributes (P.qkvw), which torch.compile traces like any module's"""

    def __init__(self, named):
        super().__init__()
        for name, t in named:
            self.register_parameter(name, nn.Parameter(t))


class GPT(nn.Module):
    """dev/gpt_ref.py's model (read its forward) with one Tensors module per layer (dev/gpt_ref.py stacks
    the layers along a leading axis; slicing those would cost a full-size gradient per layer), no
    documents (doc_token -1), attention types path, path-fox, learned. Parameters are the table's
    (dev/gpt_ref.py param_table, model/params.h), initialised by params.h's rule. Under autocast the
    matmuls run in bf16; the w path (conv, SiLU, norm), beta and g run in the parameters' dtype (f32),
    as FLA requires and our GPU model does."""

    def __init__(self, c, path_attn, sdpa):
        super().__init__()
        self.c, self.path_attn, self.sdpa = c, path_attn, sdpa
        table = gpt_ref.param_table(c)
        self.decay = {name: decay for name, _, decay, _ in table}
        std_resid = 0.02 / math.sqrt(2 * c["n_layer"])
        stds = {"normal": 0.02, "residual": std_resid}

        def init(shape, rule):
            t = torch.empty(shape)
            if rule in stds:
                return nn.init.normal_(t, 0.0, stds[rule])
            return nn.init.constant_(t, 1.0 if rule == "ones" else 0.0)

        self.top = Tensors((n, init(s, i)) for n, s, _, i in table if n in GLOBAL)
        self.layers = nn.ModuleList(Tensors((n, init(s[1:], i)) for n, s, _, i in table if n not in GLOBAL)
                                    for _ in range(c["n_layer"]))

    def param_groups(self, weight_decay):
        """AdamW groups by the table's decay flag ("layers.3.qkvw" -> qkvw's flag)"""
        named = [(n.rsplit(".", 1)[-1], p) for n, p in self.named_parameters()]
        return [{"params": [p for n, p in named if self.decay[n]], "weight_decay": weight_decay},
                {"params": [p for n, p in named if not self.decay[n]], "weight_decay": 0.0}]

    def load_reference(self, P):
        """dev/gpt_ref.py's parameters (stacked layers) into this model, in this model's dtype"""
        with torch.no_grad():
            for n, p in self.top.named_parameters():
                p.copy_(P[n])
            for l, layer in enumerate(self.layers):
                for n, p in layer.named_parameters():
                    p.copy_(P[n][l])

    def path_inputs(self, h, P):
        """w (B, T, NH, d) unit rows, beta (B, T, NH), g (B, T, NH) or None, in the parameters' dtype"""
        B, T, C = h.shape
        NH, K, dt = self.c["n_head"], self.c["conv_size"], P.wconv.dtype
        u = F.linear(F.linear(h, P.wdown), P.wup)  # (B, T, C) low-rank projection (bf16 under autocast)
        with torch.autocast(device_type=h.device.type, enabled=False):
            u = u.to(dt).transpose(1, 2)  # (B, C, T)
            u = F.conv1d(F.pad(u, (K - 1, 0)), P.wconv[:, None, :], groups=C)  # causal depthwise, K taps
            y = F.silu(u).transpose(1, 2).reshape(B, T, NH, C // NH)
            w = y * torch.rsqrt((y * y).sum(-1, keepdim=True) + 1e-6)
            h32 = h.to(dt)
            beta = 2.0 * torch.sigmoid(F.linear(h32, P.betaw, P.betab))
            g = F.logsigmoid(F.linear(h32, P.gatew, P.gateb)) if self.c["attn"] == "path-fox" else None
        return w.contiguous(), beta, g

    def block(self, x, P):
        B, T, C = x.shape
        NH = self.c["n_head"]
        d = C // NH
        h = F.layer_norm(x, (C,), P.ln1w, P.ln1b, eps=1e-5)
        q, k, v = F.linear(h, P.qkvw, P.qkvb).view(B, T, 3, NH, d).unbind(2)  # (B, T, NH, d) each
        if self.c["attn"] in ("path", "path-fox"):
            w, beta, g = self.path_inputs(h, P)
            y, _ = self.path_attn(q, k, v, w, beta, g, 1.0 / math.sqrt(d))
        else:
            y = self.sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True).transpose(1, 2)
        x = x + F.linear(y.reshape(B, T, C), P.attprojw, P.attprojb)
        h = F.layer_norm(x, (C,), P.ln2w, P.ln2b, eps=1e-5)
        return x + F.linear(F.gelu(F.linear(h, P.fcw, P.fcb), approximate="tanh"), P.fcprojw, P.fcprojb)

    def embed(self, idx):
        x = F.embedding(idx, self.top.wte)
        return x + self.top.wpe[:idx.shape[1]] if self.c["attn"] == "learned" else x

    def head(self, x, targets):
        C, V = self.c["n_embd"], self.c["vocab_size"]
        x = F.layer_norm(x, (C,), self.top.lnfw, self.top.lnfb, eps=1e-5)
        logits = F.linear(x, self.top.wte)  # tied head over the padded vocab
        if targets is None:
            return logits
        return F.cross_entropy(logits[..., :V].reshape(-1, V).float(), targets.reshape(-1), ignore_index=-1)

    def forward(self, idx, targets=None):
        """idx, targets (B, T) int64; the mean cross-entropy over the real vocab, or logits (B, T, Vp).
        embed, block and head are methods of their own: where the attention breaks torch.compile's graph
        (FLA's op) inside the layer loop, Dynamo skips this frame and compiles each of them instead."""
        x = self.embed(idx)
        for P in self.layers:
            x = self.block(x, P)
        return self.head(x, targets)


# ---------------------------------------------------------------------------------------------
# the PyTorch side: attention backends, the check, the timed loop

def attention_backends(args, device):
    """(path_attn, its name, why it is missing), (sdpa, its name)"""
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    softmax = (sdpa, "SDPA") if sdpa is not None else (causal_attention_reference, "naive attention (torch < 2)")
    if device.type == "cpu":
        return (path_attn_reference, "gpt_ref.path_scores (CPU)", None), softmax
    if args.fla:
        sys.path.insert(0, os.path.abspath(args.fla))
    try:
        from fla.ops.path_attn.parallel import parallel_path_attn
    except Exception as e:  # not there, or a dependency (einops, triton) missing
        hint = "" if args.fla else "; give --fla DIR, the folder that holds FLA's fla/"
        return (None, "FLA", f"FLA's parallel_path_attn does not import ({type(e).__name__}: {e}){hint}"), softmax
    return (parallel_path_attn, "FLA", None), softmax


def make_model(c, device, backends, dtype=torch.float32):
    (path_attn, _, _), (sdpa, _) = backends
    return GPT(c, path_attn, sdpa).to(device=device, dtype=dtype)


def check_attn(attn, device, backends):
    """relative RMS of our module's logits (CHECK config, dev/gpt_ref.py's init_params; on the GPU as timed,
    on the CPU in float64) against dev/gpt_ref.py's float64 forward; (value, bar)"""
    c = model_config(CHECK, attn)
    gen = torch.Generator().manual_seed(9)
    P = gpt_ref.init_params(c, gen)
    idx = torch.randint(0, c["vocab_size"], (CHECK["B"], CHECK["T"]), generator=gen)
    ref = gpt_ref.forward(c, P, idx)
    cpu = device.type == "cpu"
    model = make_model(c, device, backends, torch.float64 if cpu else torch.float32)
    model.load_reference(P)
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=not cpu):
        got = model(idx.to(device)).double().cpu()
    return ((got - ref).norm() / ref.norm()).item(), CHECK_BAR["float64" if cpu else "bf16 autocast"]


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_torch(c, B, T, device, backends, compile_model, warmup, steps):
    """median seconds per training step, peak GiB allocated (None on the CPU)"""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = make_model(c, device, backends)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(model.param_groups(0.1), lr=3e-3, betas=(0.9, 0.999), eps=1e-8, **fused)
    params = [p for g in opt.param_groups for p in g["params"]]
    run = torch.compile(model) if compile_model else model
    gen = torch.Generator(device=device).manual_seed(1337)
    V = c["vocab_size"]

    def step():
        idx = torch.randint(0, V, (B, T + 1), device=device, generator=gen)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = run(idx[:, :-1], idx[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return statistics.median(times), mem  # model and optimizer go with this frame


def torch_row(args, attn, B, shape, device, backends, check_failed):
    """one PyTorch row: dict(label, tok_s, ms, mem_gib) or dict(label, error)"""
    c = model_config(shape, attn)
    path = attn in ("path", "path-fox")
    (_, path_name, path_missing), (_, softmax_name) = backends
    compiled = args.compile
    label = lambda: ("compile+" if compiled else "eager+") + (path_name if path else softmax_name) + \
        (" (check FAILED)" if check_failed else "")
    if path and path_missing:
        return dict(label=label(), error=path_missing)
    print(f"torch {attn} B{B}: {label()}, {args.warmup} warm-up steps{' (compiling)' if compiled else ''} + "
          f"{args.steps}", flush=True)
    note = ""
    if compiled:  # block() is one code object for every layer: room for a compilation per layer if guards differ
        cfg = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):  # the newer name, the older one
            if hasattr(cfg, name):
                setattr(cfg, name, max(getattr(cfg, name), 64))
    while True:
        try:
            if compiled:
                torch._dynamo.reset()  # a fresh compilation per row
            sec, mem = time_torch(c, B, shape["T"], device, backends, compiled, args.warmup, args.steps)
            error = None
        except torch.cuda.OutOfMemoryError:
            error, retry = "out of GPU memory", False
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0][:160]
            oom = "out of memory" in str(e).lower()  # torch.compile may wrap the OutOfMemoryError
            error, retry = ("out of GPU memory" if oom else f"{type(e).__name__}: {first}"), compiled and not oom
        free_memory(device)  # here, not in the except blocks: their traceback holds the model
        if error is None:
            return dict(label=label() + note, tok_s=B * shape["T"] / sec, ms=1e3 * sec, mem_gib=mem)
        if not retry:
            return dict(label=label() + note, error=error)
        print(f"warning: torch {attn} B{B}: torch.compile failed ({error}); running it eager instead",
              file=sys.stderr, flush=True)
        compiled, note = False, " (compile failed)"


# ---------------------------------------------------------------------------------------------
# our trainer

def write_shard(folder, vocab, n_tokens, seed=1337):
    """a random-token llm.c shard (256 int32 header: magic, version, token count; then uint16 tokens)"""
    path = os.path.join(folder, "bench_train_000.bin")
    header = np.zeros(256, dtype="<i4")
    header[:3] = [SHARD_MAGIC, SHARD_VERSION, n_tokens]
    tokens = np.random.default_rng(seed).integers(0, vocab, size=n_tokens, dtype=np.uint16)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    return path


class GpuMemoryPeak:
    """Peak of nvidia-smi's memory.used on GPU 0, in GiB above the value at start, sampled every
    0.2 s from a thread while `with` holds; value None without nvidia-smi."""

    def __init__(self):
        self.smi = shutil.which("nvidia-smi")
        self.value = None

    def read_mib(self):
        out = subprocess.run([self.smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        return float(out[0]) if out else None

    def __enter__(self):
        if self.smi is None:
            return self
        self.base, self.peak, self.stop = self.read_mib(), 0.0, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def poll(self):
        while not self.stop.wait(0.2):
            m = self.read_mib()
            if m is not None:
                self.peak = max(self.peak, m)

    def __exit__(self, *exc):
        if self.smi is None:
            return
        self.stop.set()
        self.thread.join()
        if self.base is not None:
            self.value = max(self.peak - self.base, 0.0) / 1024


def ours_row(args, attn, B, shape, shard):
    """one ./train run: dict(tok_s, ms, mfu, mem_gib) or dict(error)"""
    cmd = [args.train, "--train-data", shard, "--vocab", str(shape["vocab_size"]), "--layers", str(shape["n_layer"]),
           "--heads", str(shape["n_head"]), "--width", str(shape["n_embd"]), "--seq-len", str(shape["T"]),
           "--batch", str(B), "--steps", str(args.warmup + args.steps), "--attn", attn, "--eval-every", "0",
           "--sample-every", "0", "--peak-tflops", str(args.peak_tflops)]
    print(f"ours {attn} B{B}: {' '.join(cmd)}", flush=True)
    try:
        with GpuMemoryPeak() as mem:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=OURS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return dict(error=f"no result within {OURS_TIMEOUT_S} s (killed)")
    except OSError as e:
        return dict(error=f"cannot run {args.train}: {e}")
    if p.returncode != 0:
        lines = [l for l in (p.stderr + p.stdout).splitlines() if l.strip()]
        errors = [l for l in lines if "error" in l]
        return dict(error=(errors or lines or [f"exit status {p.returncode}"])[-1].strip())
    rows = [m for m in map(STEP_LINE.match, p.stdout.splitlines()) if m]
    steady = [m for m in rows if int(m.group(1)) > args.warmup]
    if len(steady) < args.steps:
        return dict(error=f"{len(steady)} step lines after warm-up, expected {args.steps}; has the step line's format "
                          "changed?")
    tok_s = statistics.median(float(m.group(4)) * (1e3 if m.group(5) == "k" else 1e6) for m in steady)
    tok_s_printed = statistics.median(float(m.group(4)) for m in steady)  # in the line's unit, k or M
    mfus = [float(m.group(6)) / 100 for m in steady if m.group(6) is not None]
    return dict(tok_s=tok_s, ms=1e3 * B * shape["T"] / tok_s, mem_gib=mem.value,
                mfu_printed=statistics.median(mfus) if mfus else None,
                tok_s_rounding=0.051 / tok_s_printed)  # relative rounding of the printed tok/s (one decimal)


# ---------------------------------------------------------------------------------------------
# main

def gpu_name():
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader", "-i", "0"], capture_output=True,
                             text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return "no GPU (nvidia-smi absent)"


def commit():
    run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True)
    head = run("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "? (no git)"
    return head.stdout.strip() + (" + working tree" if run("status", "--porcelain", "-uno").stdout.strip() else "")


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Whole-model training throughput, ours vs PyTorch (read the top comment).")
    ap.add_argument("--attn", default=",".join(ATTNS), help="comma-separated attention types: " + ", ".join(ATTNS))
    ap.add_argument("--batch", default=None, help="comma-separated batch sizes (default 32,64; --tiny: 2,4)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps after warm-up (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="PyTorch eager, no torch.compile")
    ap.add_argument("--no-ours", dest="ours", action="store_false", help="skip ./train")
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch model")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the check against dev/gpt_ref.py")
    ap.add_argument("--fla", default=None, help="folder that holds FLA's fla/ package (put on sys.path)")
    ap.add_argument("--train", default="./train", help="our trainer (default ./train; ./train_cpu on a CPU)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="peak TFLOP/s of one device for MFU (989: H100 SXM bf16 dense)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where the PyTorch model runs")
    ap.add_argument("--tiny", action="store_true", help="2 layers, 2 heads, width 64, T 64, vocab 300")
    a = ap.parse_args(argv)
    a.attns = [x for x in a.attn.split(",") if x]
    bad = [x for x in a.attns if x not in ATTNS]
    if bad:
        ap.error(f"--attn {','.join(bad)}: the PyTorch model has {', '.join(ATTNS)}")
    try:
        a.batches = [int(x) for x in (a.batch or ("2,4" if a.tiny else "32,64")).split(",")]
    except ValueError:
        ap.error(f"--batch {a.batch}: a comma-separated list of integers")
    if a.steps < 1 or a.warmup < 0 or min(a.batches) < 1 or a.peak_tflops <= 0:
        ap.error("--steps and every batch must be at least 1, --warmup at least 0, --peak-tflops positive")
    if a.device == "cpu":
        a.compile = False  # the CPU mode tests the logic; torch.compile on a CPU would time nothing useful
    if a.compile and not hasattr(torch, "compile"):
        print(f"warning: torch {torch.__version__} has no torch.compile: PyTorch runs eager", file=sys.stderr)
        a.compile = False
    return a


def fmt(x, spec, missing="-"):
    return missing if x is None else format(x, spec)


def main(argv):
    args = parse_args(argv)
    shape = TINY if args.tiny else GPT2
    device = torch.device(args.device)
    peak = args.peak_tflops * 1e12
    results = {(a, B): {} for a in args.attns for B in args.batches}
    notes = []

    print(f"# bench_gpt | {gpu_name()} | commit {commit()} | torch {torch.__version__} | "
          f"L{shape['n_layer']} H{shape['n_head']} C{shape['n_embd']} T{shape['T']} V{shape['vocab_size']} | "
          f"median of {args.steps} steps after {args.warmup} | peak {args.peak_tflops:g} TFLOP/s", flush=True)

    if args.ours and not os.path.isfile(args.train):
        notes.append(f"ours: {args.train} not found (build it: make train); ours skipped")
        args.ours = False
    if args.ours:  # first: this process has not touched the GPU yet
        folder = tempfile.mkdtemp(prefix="bench_gpt.")
        try:
            shard = write_shard(folder, shape["vocab_size"], 4 * max(args.batches) * shape["T"] + 1)
            for a, B in results:
                r = results[(a, B)]["ours"] = ours_row(args, a, B, shape, shard)
                if "error" in r:
                    print(f"ours {a} B{B}: {r['error']}", flush=True)
                    continue
                r["mfu"] = flops_per_token(model_config(shape, a), shape["T"]) * r["tok_s"] / peak
                tolerance = r["mfu"] * r["tok_s_rounding"] + 6e-4  # the printed values' rounding
                if r["mfu_printed"] is not None and abs(r["mfu_printed"] - r["mfu"]) > tolerance:
                    notes.append(f"ours {a} B{B}: ./train printed MFU {100 * r['mfu_printed']:.1f}%, this script's "
                                 f"formula gives {100 * r['mfu']:.1f}%: model/config.c and flops_per_token() disagree")
                print(f"ours {a} B{B}: {r['ms']:.1f} ms, {r['tok_s'] / 1e3:.1f}k tok/s, MFU {100 * r['mfu']:.1f}%, "
                      f"memory {fmt(r['mem_gib'], '.1f', '?')} GiB", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    if args.torch and device.type == "cuda" and not torch.cuda.is_available():
        notes.append("PyTorch: no CUDA device; PyTorch rows skipped (--device cpu --tiny tests the logic on a CPU)")
        args.torch = False
    if args.torch:
        torch.set_float32_matmul_precision("high")  # TF32 for the few float32 matmuls (beta, g)
        backends = attention_backends(args, device)
        failed = set()
        for a in args.attns:
            if not args.check or (a in ("path", "path-fox") and backends[0][2]):
                continue
            try:
                err, bar = check_attn(a, device, backends)
                result = f"rel_rms {err:.1e}  bar {bar:.0e}  {'ok' if err <= bar else 'FAIL'}"
            except Exception as e:  # e.g. the attention op rejects float32
                err, bar = float("nan"), 0.0
                result = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}  FAIL"
            free_memory(device)
            print(f"check {a:9s} logits vs dev/gpt_ref.py  {result}", flush=True)
            if not err <= bar:
                failed.add(a)
                notes.append(f"PyTorch {a}: the check against dev/gpt_ref.py failed ({result})")
        for a, B in results:
            r = results[(a, B)]["torch"] = torch_row(args, a, B, shape, device, backends, a in failed)
            if "error" in r:
                print(f"torch {a} B{B}: {r['label']}: {r['error']}", flush=True)
                continue
            r["mfu"] = flops_per_token(model_config(shape, a), shape["T"]) * r["tok_s"] / peak
            print(f"torch {a} B{B}: {r['label']}: {r['ms']:.1f} ms, {r['tok_s'] / 1e3:.1f}k tok/s, "
                  f"MFU {100 * r['mfu']:.1f}%, memory {fmt(r['mem_gib'], '.1f', '?')} GiB", flush=True)

    print()
    print("| attn | batch | ours tok/s | ours ms | ours MFU | ours GiB | PyTorch | PyTorch tok/s | PyTorch ms | "
          "PyTorch MFU | PyTorch GiB | ours / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (a, B), r in results.items():
        o, t = r.get("ours", {}), r.get("torch", {})
        for side, x in (("ours", o), ("PyTorch", t)):
            if "error" in x:
                notes.append(f"{side} {a} B{B}: {x['error']}")
        ok_o, ok_t = "tok_s" in o, "tok_s" in t
        cells = [a, str(B),
                 f"{o['tok_s'] / 1e3:.1f}K" if ok_o else "-", fmt(o.get("ms"), ".1f"),
                 f"{100 * o['mfu']:.1f}%" if ok_o else "-", fmt(o.get("mem_gib"), ".1f"),
                 t.get("label", "-"),
                 f"{t['tok_s'] / 1e3:.1f}K" if ok_t else "-", fmt(t.get("ms"), ".1f"),
                 f"{100 * t['mfu']:.1f}%" if ok_t else "-", fmt(t.get("mem_gib"), ".1f"),
                 f"{o['tok_s'] / t['tok_s']:.2f}" if ok_o and ok_t else "-"]
        print("| " + " | ".join(cells) + " |")
    print("GiB: ours = nvidia-smi memory.used peak above the start (context, workspace, scratch included); "
          "PyTorch = torch.cuda.max_memory_allocated.")
    for n in notes:
        print("note: " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
