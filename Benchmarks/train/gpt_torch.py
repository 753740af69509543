#!/usr/bin/env python3
"""PyTorch reference for Sluice's byte-level GPT (SluiceTrain.GPT).

Same architecture, parameter names, parameter order, initialisation rule, AdamW parameter groups,
gradient clipping and learning-rate schedule as the Swift trainer, so that

  * `fixture` writes the committed correctness fixture (a tiny config: parameters, inputs, logits,
    loss, every parameter gradient and ten AdamW step losses) that the Swift tests compare against;
  * `bench` times training steps on CPU with the same config and thread count as `sluice train`.

Needs torch (CPU wheel: pip install 'torch==2.13.0+cpu'), numpy and safetensors. CI never runs it.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(c, 3 * c)
        self.attn.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(c, 4 * c)
        self.mlp.c_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.attn.c_attn(self.ln_1(x))
        q, k, v = qkv.split(c, dim=2)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.attn.c_proj(y)
        x = x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, vocab=256, context=128, layers=4, channels=128, heads=4):
        super().__init__()
        self.wte = nn.Embedding(vocab, channels)
        self.wpe = nn.Embedding(context, channels)
        self.h = nn.ModuleList([Block(channels, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(channels, eps=1e-5)
        # Initialisation: N(0, 0.02) for weights and embeddings, N(0, 0.02/sqrt(2L)) for the
        # residual projections, zero biases, unit LayerNorm weights (as SluiceTrain.GPT does).
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif "ln_" in name:
                nn.init.ones_(p)
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))
            else:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.shape
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def parameter_order(model):
    """Sluice's order: wte, wpe, then per layer ln_1, c_attn, c_proj, ln_2, c_fc, mlp c_proj, then ln_f."""
    return [name for name, _ in model.named_parameters()]


def optimizer(model, lr, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=False)


def learning_rate(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def fixture(args):
    from safetensors.torch import save_file
    torch.manual_seed(args.seed)
    cfg = dict(vocab=256, context=16, layers=2, channels=32, heads=4)
    model = GPT(**cfg)
    b, t = 2, 16
    # Deterministic inputs: bytes of a short English+Chinese text.
    text = ("Sluice curates streams. 数据流经过清洗。" * 8).encode("utf-8")
    tokens = torch.tensor(list(text[: b * t + 1]), dtype=torch.long)
    idx = tokens[:-1].view(b, t).clone()
    tgt = tokens[1:].view(b, t).clone()
    tensors = {f"param.{n}": p.detach().clone() for n, p in model.named_parameters()}
    logits, loss = model(idx, tgt)
    loss.backward()
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad.detach().clone()
    tensors["logits"] = logits.detach().clone()
    tensors["loss"] = loss.detach().reshape(1).clone()
    tensors["inputs"] = idx.to(torch.int32)
    tensors["targets"] = tgt.to(torch.int32)
    model.zero_grad(set_to_none=True)
    opt = optimizer(model, 1e-3, 0.1)
    losses = []
    for step in range(10):
        lr = learning_rate(step, 1e-3, 1e-4, 3, 10)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        _, loss = model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    tensors["step_losses"] = torch.tensor(losses, dtype=torch.float32)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"config": json.dumps({**cfg, "batch": b, "seq": t, "max_lr": 1e-3, "min_lr": 1e-4, "warmup": 3,
                                  "steps": 10, "weight_decay": 0.1, "clip": 1.0, "seed": args.seed}),
            "order": json.dumps(parameter_order(model))}
    save_file(tensors, args.output, metadata=meta)
    print(f"wrote {args.output}: loss {tensors['loss'].item():.6f}, step losses {losses}")


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(context=args.context, layers=args.layers, channels=args.dim, heads=args.heads)
    opt = optimizer(model, 3e-4, 0.1)
    data = open(args.input, "rb").read() if args.input else bytes(range(256)) * 4096
    data = torch.tensor(list(data[: 8 << 20]), dtype=torch.long)
    b, t = args.batch, args.context
    g = torch.Generator().manual_seed(0)

    def batch():
        ix = torch.randint(0, len(data) - t - 1, (b,), generator=g)
        return torch.stack([data[i:i + t] for i in ix]), torch.stack([data[i + 1:i + t + 1] for i in ix])

    def step():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    seconds = time.perf_counter() - start
    tokens = args.steps * b * t
    print(json.dumps({"peer": f"pytorch {torch.__version__}", "threads": args.threads, "layers": args.layers,
                      "dim": args.dim, "context": t, "batch": b, "steps": args.steps, "loss": round(loss, 4),
                      "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1)}))


@torch.no_grad()
def forward_cached(model, idx, start, cache):
    """Forward of new tokens `idx` (B, t) at positions start… with a per-layer (k, v) cache list, updated in place."""
    b, t = idx.shape
    x = model.wte(idx) + model.wpe(torch.arange(start, start + t))
    for i, block in enumerate(model.h):
        c = x.size(-1)
        qkv = block.attn.c_attn(block.ln_1(x))
        q, k, v = qkv.split(c, dim=2)
        hs = c // block.heads
        q = q.view(b, t, block.heads, hs).transpose(1, 2)
        k = k.view(b, t, block.heads, hs).transpose(1, 2)
        v = v.view(b, t, block.heads, hs).transpose(1, 2)
        if cache[i] is not None:
            k = torch.cat([cache[i][0], k], dim=2)
            v = torch.cat([cache[i][1], v], dim=2)
        cache[i] = (k, v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=(t > 1))
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + block.attn.c_proj(y)
        x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(x)), approximate="tanh"))
    return model.ln_f(x[:, -1, :]) @ model.wte.weight.t()


@torch.no_grad()
def decode(args):
    """KV-cached greedy decoding: `batch` sequences from a `prompt`-byte prefix to the full context."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(context=args.context, layers=args.layers, channels=args.dim, heads=args.heads).eval()
    for batch in args.batch:
        decoded, seconds = 0, 0.0
        for _ in range(args.repeats):
            idx = torch.tensor([[65 + (s + p) % 26 for p in range(args.prompt)] for s in range(batch)])
            cache = [None] * len(model.h)
            logits = forward_cached(model, idx, 0, cache)
            start = time.perf_counter()
            for position in range(args.prompt, args.context):
                token = logits.argmax(dim=-1, keepdim=True)
                logits = forward_cached(model, token, position, cache)
                decoded += batch
            seconds += time.perf_counter() - start
        print(json.dumps({"peer": f"pytorch {torch.__version__}", "threads": args.threads, "batch": batch,
                          "decoded": decoded, "seconds": round(seconds, 3), "tokens_per_second": round(decoded / seconds, 1)}))


@torch.no_grad()
def score(args):
    """Forward-only scoring (loss per token) of batches of full windows: tokens/s."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(context=args.context, layers=args.layers, channels=args.dim, heads=args.heads).eval()
    x = torch.randint(0, 256, (args.batch, args.context))
    y = torch.randint(0, 256, (args.batch, args.context))
    with torch.inference_mode():
        for _ in range(3):
            model(x, y)
        start = time.perf_counter()
        for _ in range(args.steps):
            model(x, y)
        seconds = time.perf_counter() - start
    print(json.dumps({"peer": f"pytorch {torch.__version__}", "threads": args.threads, "batch": args.batch,
                      "tokens_per_second": round(args.steps * args.batch * args.context / seconds, 1)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fixture", help="write the correctness fixture (safetensors)")
    f.add_argument("--output", required=True)
    f.add_argument("--seed", type=int, default=1337)
    b = sub.add_parser("bench", help="time training steps on CPU")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--layers", type=int, default=4)
    b.add_argument("--dim", type=int, default=128)
    b.add_argument("--heads", type=int, default=4)
    b.add_argument("--context", type=int, default=128)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--steps", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--input", help="training bytes (default: a synthetic pattern)")
    d = sub.add_parser("decode", help="time KV-cached greedy decoding on CPU")
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--layers", type=int, default=4)
    d.add_argument("--dim", type=int, default=128)
    d.add_argument("--heads", type=int, default=4)
    d.add_argument("--context", type=int, default=128)
    d.add_argument("--prompt", type=int, default=16)
    d.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16, 32])
    d.add_argument("--repeats", type=int, default=3)
    sc = sub.add_parser("score", help="time forward-only scoring on CPU")
    sc.add_argument("--threads", type=int, default=2)
    sc.add_argument("--layers", type=int, default=4)
    sc.add_argument("--dim", type=int, default=128)
    sc.add_argument("--heads", type=int, default=4)
    sc.add_argument("--context", type=int, default=128)
    sc.add_argument("--batch", type=int, default=16)
    sc.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    {"fixture": fixture, "bench": bench, "decode": decode, "score": score}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
