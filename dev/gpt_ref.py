#!/usr/bin/env python3
"""
gpt_ref.py -- the pathgpt model (model/gpt_cpu.c) again in PyTorch, float64 on the CPU, with
autograd for the backward and torch.optim.AdamW for the steps; it writes the reference states
that test_gpt2pathattn.c checks the C model against (llm.c's test_gpt2 scheme).

Why float64: the C model is fp32, so a float64 twin is the truth to the C model's rounding, and
the test's bars measure the C model's error alone. The parameters are drawn here, rounded to
float32 and then used in float64, so both sides start from the same numbers.

THE MODEL (doc/DESIGN.md section 3; model/config.h, model/params.h)
    GPT-2 layout: x = wte[tok] (+ wpe[pos] for learned); per layer x += attn(ln1(x));
    x += fcproj(gelu_tanh(fc(ln2(x)))); logits = lnf(x) @ wte^T over Vp columns; cross-entropy
    over the first V columns, targets < 0 ignored; layernorm eps 1e-5.
    Attention: q | k | v = h @ qkvw^T + qkvb, head hh owns channels hh*d .. hh*d+d-1.
      rope:  rotate q, k per head, pairs (i, i + d/2), angle pos * theta^(-2i/d)
      PaTH (path, path-fox): w = l2norm_head(silu(conv(h @ wdown^T @ wup^T))), causal depthwise
             conv with K taps, out[t,c] = sum_k wconv[c,k] u[t-(K-1)+k, c] (taps before the document
             start read 0), l2norm y / sqrt(sum y^2 + 1e-6); beta = 2 sigmoid(h @ betaw^T + betab)
             s_ij = q_i^T H_i ... H_{j+1} k_j, H_t = I - beta_t w_t w_t^T  (a recurrence over the
             offset i - j, all queries at once)
      gated (path-fox, fox): g = logsigmoid(h @ gatew^T + gateb), G = cumsum(g)
      z_ij = scale s_ij + gate_scale (G_i - G_j), scale = 1/sqrt(d), gate_scale = scale (path-fox),
             1 (fox); softmax over j <= i in the same document; y = attn @ attprojw^T + attprojb
    Documents: t starts one if t == 0 or inputs[b,t] == doc_token (doc_token >= 0); positions count
    from the start; attention, the conv and the gate sums stay inside documents.

REFERENCE STATE FILE (little-endian; one per case: OUTDIR/<case>.bin)
    int32   header[256]
              0 magic 20251125   1 version 1
              2 attention type (model/config.h's AttnType: 0 path, 1 path-fox, 2 fox, 3 rope,
                4 nope, 5 learned)
              3 max_seq_len   4 vocab_size V   5 padded_vocab_size Vp   6 n_layer L   7 n_head NH
              8 n_embd C   9 w_rank R   10 conv_size K   11 doc_token (-1: none)
              12 B   13 T   14 n_steps   15 n_params (elements of one parameter copy)
              16..21 float32 bit patterns: rope_theta, lr, beta1, beta2, eps, weight_decay
              the rest 0
    float32 params[n_params]        table order of model/params.h (tensors the type lacks are absent)
    int32   inputs[B*T]
    int32   targets[B*T]            < 0: ignored
    float32 logits[B*T*Vp]
    float32 loss                    mean cross-entropy over the valid targets
    float32 grads[n_params]         d loss / d params, table order
    float32 losses[n_steps]         the loss of the forward of each AdamW step on this batch
                                    (losses[0] = loss), taken before that step's update
    float32 params_after[n_params]  the parameters after the n_steps steps

USAGE
    python3 dev/gpt_ref.py OUTDIR [CASE ...]     (all cases by default; `make test` runs it)
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

MAGIC, VERSION = 20251125, 1
ATTN_TYPES = ["path", "path-fox", "fox", "rope", "nope", "learned"]  # config.h's AttnType order

# The cases: name, attention type, doc_token (-1: none). The -docs cases put document starts inside
# rows (see make_batch); test_gpt2pathattn.c lists the same names.
CASES = [
    ("path", "path", -1), ("path-fox", "path-fox", -1), ("fox", "fox", -1), ("rope", "rope", -1),
    ("nope", "nope", -1), ("learned", "learned", -1),
    ("path-fox-docs", "path-fox", 1), ("rope-docs", "rope", 1), ("learned-docs", "learned", 1),
]

# A small config: every code path, two layers, two heads, T not a power of two.
CONFIG = dict(max_seq_len=16, vocab_size=11, padded_vocab_size=128, n_layer=2, n_head=2, n_embd=16,
              w_rank=8, conv_size=3, rope_theta=10000.0, B=3, T=12)
OPTIM = dict(n_steps=10, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
DOC_STARTS = {0: [5], 1: [1, 2], 2: [9, 11]}  # rows -> positions of doc_token in the -docs cases


def param_table(c):
    """model/params.h's table: (name, shape, decay, init) of the tensors this type uses, in order."""
    L, C, NH, R, K = c["n_layer"], c["n_embd"], c["n_head"], c["w_rank"], c["conv_size"]
    path, gated = c["attn"] in ("path", "path-fox"), c["attn"] in ("path-fox", "fox")
    rows = [
        ("wte", (c["padded_vocab_size"], C), 1, "normal", True),
        ("wpe", (c["max_seq_len"], C), 1, "normal", c["attn"] == "learned"),
        ("ln1w", (L, C), 0, "ones", True), ("ln1b", (L, C), 0, "zeros", True),
        ("qkvw", (L, 3 * C, C), 1, "normal", True), ("qkvb", (L, 3 * C), 0, "zeros", True),
        ("attprojw", (L, C, C), 1, "residual", True), ("attprojb", (L, C), 0, "zeros", True),
        ("ln2w", (L, C), 0, "ones", True), ("ln2b", (L, C), 0, "zeros", True),
        ("fcw", (L, 4 * C, C), 1, "normal", True), ("fcb", (L, 4 * C), 0, "zeros", True),
        ("fcprojw", (L, C, 4 * C), 1, "residual", True), ("fcprojb", (L, C), 0, "zeros", True),
        ("lnfw", (C,), 0, "ones", True), ("lnfb", (C,), 0, "zeros", True),
        ("wdown", (L, R, C), 1, "normal", path), ("wup", (L, C, R), 1, "normal", path),
        ("wconv", (L, C, K), 1, "normal", path), ("betaw", (L, NH, C), 1, "normal", path),
        ("betab", (L, NH), 0, "zeros", path), ("gatew", (L, NH, C), 1, "normal", gated),
        ("gateb", (L, NH), 0, "zeros", gated),
    ]
    return [(n, s, d, i) for n, s, d, i, used in rows if used]


def init_params(c, gen):
    """Parameters large enough that every path matters (not param_init's 0.02: attention would be
    nearly uniform): matrices N(0, 1/fan_in), residual projections half that std, norms 1 + N(0, 0.1^2),
    biases N(0, 0.2^2); betab N(0, 1) spreads beta over (0, 2); gateb N(2, 0.5^2) gives gates near
    log 0.88. Rounded to float32 (the file's precision), held in float64."""
    P = {}
    for name, shape, _, init in param_table(c):
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        if init == "ones":
            x = 1.0 + 0.1 * x
        elif name == "betab":
            x = 1.0 * x
        elif name == "gateb":
            x = 2.0 + 0.5 * x
        elif init == "zeros":
            x = 0.2 * x
        else:
            x = x / math.sqrt(shape[-1]) * (0.5 if init == "residual" else 1.0)
        P[name] = x.float().double()
    return P


def make_batch(c, gen, with_docs):
    """inputs, targets (B, T) int64; every 5th target (by flat index, from 3) is -1 (ignored).
    With docs, doc_token sits at DOC_STARTS (a 1-token document, one at the last position) and
    nowhere else."""
    B, T, V, doc = c["B"], c["T"], c["vocab_size"], c["doc_token"]
    inputs = torch.randint(0, V, (B, T), generator=gen)
    if with_docs:
        inputs = torch.where(inputs == doc, (inputs + 1) % V, inputs)
        for b, ts in DOC_STARTS.items():
            inputs[b, ts] = doc
    targets = torch.randint(0, V, (B, T), generator=gen)
    targets.view(-1)[3::5] = -1
    return inputs, targets


def document_starts(inputs, doc_token):
    """(B, T): index t of the first token of each token's document."""
    B, T = inputs.shape
    t = torch.arange(T).expand(B, T)
    starts = t == 0
    if doc_token >= 0:
        starts = starts | (inputs == doc_token)
    return torch.cummax(torch.where(starts, t, torch.zeros_like(t)), dim=1).values


def rope(x, pos, theta):
    """x (B, NH, T, d) rotated: pairs (i, i + d/2), angle pos * theta^(-2i/d); pos (B, T)."""
    d = x.shape[-1]
    half = d // 2
    inv_freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)
    ang = pos[:, None, :, None].double() * inv_freq  # (B, 1, T, half)
    cos, sin = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def causal_conv(u, wc, start):
    """u (B, T, C), wc (C, K): out[t] = sum_k wc[:, k] u[t-(K-1)+k]; taps before start[b, t] read 0."""
    B, T, C = u.shape
    K = wc.shape[1]
    t = torch.arange(T)
    out = torch.zeros_like(u)
    for k in range(K):
        src = t - (K - 1 - k)
        valid = (src[None, :] >= start).to(u.dtype)[..., None]  # start >= 0, so src >= 0 too
        out = out + wc[:, k] * u[:, src.clamp(min=0), :] * valid
    return out


def path_scores(q, k, w, beta):
    """s (B, NH, T, T), s[i, j] = q_i^T H_i ... H_{j+1} k_j for j <= i (0 above the diagonal).
    Offset by offset: x_i holds H_{j+1} ... H_i q_i for j = i - delta, for all queries at once."""
    T = q.shape[-2]
    x = q
    s = torch.zeros(q.shape[:-1] + (T,), dtype=q.dtype)
    for delta in range(T):
        n = T - delta
        xs = x[..., delta:, :]  # queries i = delta .. T-1, keys j = i - delta = 0 .. n-1
        s = s + torch.diag_embed((xs * k[..., :n, :]).sum(-1), offset=-delta)
        wj, bj = w[..., :n, :], beta[..., :n, None]
        xs = xs - bj * (wj * xs).sum(-1, keepdim=True) * wj  # x_i <- H_j x_i
        x = torch.cat([x[..., :delta, :], xs], dim=-2)
    return s


def forward(c, P, inputs):
    """logits (B, T, Vp)"""
    B, T = inputs.shape
    L, C, NH, attn = c["n_layer"], c["n_embd"], c["n_head"], c["attn"]
    d = C // NH
    path, gated = attn in ("path", "path-fox"), attn in ("path-fox", "fox")
    scale = 1.0 / math.sqrt(d)
    gate_scale = scale if attn == "path-fox" else 1.0
    start = document_starts(inputs, c["doc_token"])
    pos = torch.arange(T)[None, :] - start
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = ((start[:, :, None] == start[:, None, :]) & (j <= i))[:, None]  # (B, 1, T, T)

    def heads(t):  # (B, T, C) -> (B, NH, T, d)
        return t.view(B, T, NH, d).transpose(1, 2)

    x = P["wte"][inputs]
    if attn == "learned":
        x = x + P["wpe"][pos]
    for l in range(L):
        h = F.layer_norm(x, (C,), P["ln1w"][l], P["ln1b"][l], eps=1e-5)
        q, k, v = (h @ P["qkvw"][l].T + P["qkvb"][l]).split(C, dim=-1)
        q, k, v = heads(q), heads(k), heads(v)
        if attn == "rope":
            q, k = rope(q, pos, c["rope_theta"]), rope(k, pos, c["rope_theta"])
        if path:
            u = causal_conv(h @ P["wdown"][l].T @ P["wup"][l].T, P["wconv"][l], start)
            y = heads(F.silu(u))
            w = y / torch.sqrt((y * y).sum(-1, keepdim=True) + 1e-6)
            beta = (2.0 * torch.sigmoid(h @ P["betaw"][l].T + P["betab"][l])).transpose(1, 2)
            s = path_scores(q, k, w, beta)
        else:
            s = q @ k.transpose(-1, -2)
        z = scale * s
        if gated:
            G = torch.cumsum(F.logsigmoid(h @ P["gatew"][l].T + P["gateb"][l]).transpose(1, 2), dim=-1)
            z = z + gate_scale * (G[..., :, None] - G[..., None, :])
        att = torch.softmax(z.masked_fill(~allowed, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P["attprojw"][l].T + P["attprojb"][l]
        h = F.layer_norm(x, (C,), P["ln2w"][l], P["ln2b"][l], eps=1e-5)
        x = x + F.gelu(h @ P["fcw"][l].T + P["fcb"][l], approximate="tanh") @ P["fcprojw"][l].T + P["fcprojb"][l]
    x = F.layer_norm(x, (C,), P["lnfw"], P["lnfb"], eps=1e-5)
    return x @ P["wte"].T


def loss_of(c, logits, targets):
    V = c["vocab_size"]
    return F.cross_entropy(logits[..., :V].reshape(-1, V), targets.reshape(-1), ignore_index=-1)


def flat(c, tensors):
    return np.concatenate([tensors[n].detach().numpy().ravel() for n, _, _, _ in param_table(c)]).astype(np.float32)


def make_case(name, attn, doc_token, seed):
    c = dict(CONFIG, attn=attn, doc_token=doc_token)
    gen = torch.Generator().manual_seed(seed)
    P = init_params(c, gen)
    inputs, targets = make_batch(c, gen, doc_token >= 0)
    for t in P.values():
        t.requires_grad_(True)
    table = param_table(c)
    groups = [{"params": [P[n] for n, _, decay, _ in table if decay == 1], "weight_decay": OPTIM["weight_decay"]},
              {"params": [P[n] for n, _, decay, _ in table if decay == 0], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=OPTIM["lr"], betas=(OPTIM["beta1"], OPTIM["beta2"]), eps=OPTIM["eps"])
    state = {}
    losses = []
    for step in range(OPTIM["n_steps"]):
        opt.zero_grad()
        logits = forward(c, P, inputs)
        loss = loss_of(c, logits, targets)
        loss.backward()
        if step == 0:
            state = dict(params=flat(c, P), logits=logits.detach().numpy().astype(np.float32),
                         loss=loss.item(), grads=flat(c, {n: P[n].grad for n in P}))
        losses.append(loss.item())
        opt.step()
    state.update(c=c, inputs=inputs, targets=targets, losses=losses, params_after=flat(c, P))
    return state


def write_state(path, s):
    c = s["c"]
    header = np.zeros(256, dtype=np.int32)
    ints = [MAGIC, VERSION, ATTN_TYPES.index(c["attn"]), c["max_seq_len"], c["vocab_size"], c["padded_vocab_size"],
            c["n_layer"], c["n_head"], c["n_embd"], c["w_rank"], c["conv_size"], c["doc_token"], c["B"], c["T"],
            OPTIM["n_steps"], s["params"].size]
    header[:len(ints)] = ints
    floats = [c["rope_theta"], OPTIM["lr"], OPTIM["beta1"], OPTIM["beta2"], OPTIM["eps"], OPTIM["weight_decay"]]
    header[16:22] = np.array(floats, dtype=np.float32).view(np.int32)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.astype("<i4").tobytes())
        f.write(s["params"].astype("<f4").tobytes())
        f.write(s["inputs"].numpy().astype("<i4").tobytes())
        f.write(s["targets"].numpy().astype("<i4").tobytes())
        f.write(s["logits"].astype("<f4").tobytes())
        f.write(np.array([s["loss"]], dtype="<f4").tobytes())
        f.write(s["grads"].astype("<f4").tobytes())
        f.write(np.array(s["losses"], dtype="<f4").tobytes())
        f.write(s["params_after"].astype("<f4").tobytes())
    os.replace(tmp, path)


def main(argv):
    if len(argv) < 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().split("USAGE")[1].strip())
        return 0 if argv else 1
    outdir, names = argv[0], argv[1:] or [n for n, _, _ in CASES]
    known = {n: (a, d) for n, a, d in CASES}
    for n in names:
        if n not in known:
            print(f"gpt_ref.py: error: unknown case '{n}'; cases: {', '.join(known)}", file=sys.stderr)
            return 1
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    for n in names:
        attn, doc = known[n]
        s = make_case(n, attn, doc, seed=1000 + [m for m, _, _ in CASES].index(n))
        path = os.path.join(outdir, n + ".bin")
        write_state(path, s)
        print(f"gpt_ref.py: {path}: {attn}, doc_token {doc}, loss {s['loss']:.6f} -> {s['losses'][-1]:.6f} "
              f"after {OPTIM['n_steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
