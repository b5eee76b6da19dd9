"""nanoGPT's CPU recipe for shakespeare_char re-implemented in plain PyTorch, to check
whether seqlab's 1.697 (vs nanoGPT's published 1.88) comes from seqlab or from the recipe.

    python experiments/charlm_shakespeare/nanogpt_torch.py --seeds 0 1 --out /tmp/nanogpt_torch

Written from nanoGPT's description (karpathy/nanoGPT README and config
train_shakespeare_char.py with the README's CPU overrides), not from its code: a GPT with
learned absolute positions, pre-LayerNorm blocks without biases, a final LayerNorm, the head
tied to the token embedding, N(0, 0.02) init with 0.02/sqrt(2L) on residual projections;
AdamW (betas 0.9/0.99, weight decay 0.1 on tensors of rank >= 2 only), lr 1e-3, 100 linear
warmup steps then cosine to 1e-4 at step 2,000, global-norm clip 1.0, no dropout. Data as
nanoGPT's prepare.py: the characters of input.txt, first 90% train, the rest val; batches of
12 windows of 64 at uniform random offsets.

Val loss is reported two ways at every eval step: nanoGPT's estimate (``eval_iters``
batches of 12 random windows, drawn from the same generator as training, as its
``estimate_loss``) and the mean over the whole val split (every non-overlapping 64-character
window, each read from an empty context, as seqlab's eval). One JSON line per eval on stdout
and in OUT/seed<k>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DATA = "/work/shared/data/tinyshakespeare/input.txt"


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)); no biases."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)  # residual projection
        self.ln2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_proj = nn.Linear(4 * d, d, bias=False)  # residual projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """Token + learned position embeddings, L blocks, final LayerNorm, head tied to tokens."""

    def __init__(self, vocab: int, block: int, layers: int, heads: int, d: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for blk in self.blocks:
            for w in (blk.proj.weight, blk.fc_proj.weight):
                nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * layers))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def lr_at(it: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from lr to min_lr at decay_iters."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def batch(data: torch.Tensor, n: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n windows at uniform random offsets (global torch generator), targets shifted by one."""
    ix = torch.randint(len(data) - block, (n,))
    x = torch.stack([data[i : i + block] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block] for i in ix])
    return x, y


@torch.no_grad()
def full_val(model: GPT, val: torch.Tensor, block: int, chunk: int = 256) -> float:
    """Mean loss per character over every non-overlapping window of the val split."""
    n = (len(val) - 1) // block
    x = val[: n * block].view(n, block)
    y = val[1 : n * block + 1].view(n, block)
    total = 0.0
    for i in range(0, n, chunk):
        total += model(x[i : i + chunk], y[i : i + chunk]).item() * len(x[i : i + chunk])
    return total / n


def run(seed: int, a: argparse.Namespace) -> list[dict]:
    """Train one seed; returns one record per eval step."""
    with open(DATA, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    cut = int(len(data) * 0.9)
    train, val = data[:cut], data[cut:]
    torch.manual_seed(1337 + seed)
    model = GPT(len(chars), a.block, a.layers, a.heads, a.d)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(0.9, 0.99),
    )
    n_params = sum(p.numel() for p in params) - model.pos.weight.numel()
    records, t0 = [], time.perf_counter()
    for it in range(a.iters + 1):
        if it % a.eval_interval == 0:
            model.eval()
            with torch.no_grad():
                est = float(
                    np.mean(
                        [model(*batch(val, a.batch, a.block)).item() for _ in range(a.eval_iters)]
                    )
                )
            rec = {
                "seed": seed,
                "step": it,
                "val_est": round(est, 4),
                "wall_s": round(time.perf_counter() - t0, 1),
                "params": n_params,
                "load": round(os.getloadavg()[0], 1),
            }
            if it in a.full_at:
                rec["val_full"] = round(full_val(model, val, a.block), 4)
            records.append(rec)
            print(json.dumps(rec), flush=True)
            model.train()
        if it == a.iters:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(it, a.lr, a.lr / 10, 100, a.iters)
        loss = model(*batch(train, a.batch, a.block))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--eval_interval", type=int, default=250)
    p.add_argument("--eval_iters", type=int, default=20)
    p.add_argument("--full_at", type=int, nargs="+", default=[500, 1000, 2000])
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--block", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/nanogpt_torch")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    for seed in a.seeds:
        recs = run(seed, a)
        with open(os.path.join(a.out, f"seed{seed}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)


if __name__ == "__main__":
    main()
