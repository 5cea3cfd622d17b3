"""Train the bundled default model (seeded, CPU, two threads).

Owns: batching from the token streams (prepare.py), the optimiser and LR schedule, held-out
evaluation, checkpoints (resumable), the training log and the loss-curve plot. It does not
define the network (model.py) or write Hugging Face files (export_hf.py).

Usage: train.py TOKENS_DIR OUT_DIR [--steps N] [--bench N]
Writes OUT_DIR/{model.pt, ckpt.pt, train_log.jsonl, config.json}; resumes from ckpt.pt if present.
--bench N runs N steps without writing anything and prints the step time.
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from model import Config, Llama

SEED = 1234
# Every weight matrix's row length (hidden 256, intermediate 768) is a multiple of 256, so all
# ggml k-quant formats (q2_k..q6_k, iq4_xs: 256-element super-blocks) apply to every tensor:
# compression chooses among them per tensor, and other GGUF tools can quantize the file too.
CFG = Config(vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=12,
             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
BATCH = 8            # sequences per step
SEQ = 512            # tokens per sequence (= context length)
CHAT_SHARE = 0.25    # share of sequences drawn from the ChatML conversations
LR_MAX = 1.5e-3
LR_MIN = 1.5e-4
WARMUP = 100
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
EVAL_EVERY = 200
EVAL_WINDOWS = 24    # held-out windows of SEQ tokens per eval (text), a third of that for chat


def load(path):
    return torch.from_numpy(np.fromfile(path, dtype="<u2").astype(np.int64))


def get_batch(streams, gen):
    """BATCH random windows of SEQ+1 tokens; each from the chat stream with prob CHAT_SHARE."""
    text, chat = streams
    rows = []
    pick = torch.rand(BATCH, generator=gen)
    for i in range(BATCH):
        s = chat if pick[i] < CHAT_SHARE else text
        off = int(torch.randint(0, len(s) - SEQ - 1, (1,), generator=gen))
        rows.append(s[off:off + SEQ + 1])
    b = torch.stack(rows)
    return b[:, :-1], b[:, 1:]


def eval_windows(stream, n):
    """n fixed, evenly spaced windows (the same at every eval, so curves are comparable)."""
    n = min(n, (len(stream) - 1) // SEQ)
    step = (len(stream) - SEQ - 1) // max(1, n - 1) if n > 1 else 0
    rows = [stream[i * step:i * step + SEQ + 1] for i in range(n)]
    b = torch.stack(rows)
    return b[:, :-1], b[:, 1:]


@torch.no_grad()
def evaluate(model, windows):
    model.eval()
    x, y = windows
    tot = 0.0
    for i in range(0, len(x), BATCH):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x[i:i + BATCH], y[i:i + BATCH])
        tot += float(loss) * len(x[i:i + BATCH])
    model.train()
    return tot / len(x)


def lr_at(step, total):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    p = (step - WARMUP) / max(1, total - WARMUP)
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * min(1.0, p)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokens")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--bench", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    streams = (load(os.path.join(args.tokens, "text_train.bin")),
               load(os.path.join(args.tokens, "chat_train.bin")))
    held_text = eval_windows(load(os.path.join(args.tokens, "text_heldout.bin")), EVAL_WINDOWS)
    held_chat = eval_windows(load(os.path.join(args.tokens, "chat_heldout.bin")),
                             EVAL_WINDOWS // 3)

    model = Llama(CFG)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR_MAX, betas=(0.9, 0.95), eps=1e-8)
    print("train: %d parameters, %d steps of %dx%d tokens" %
          (model.n_params(), args.steps, BATCH, SEQ), flush=True)

    if args.bench:
        for i in range(args.bench):
            t = time.time()
            x, y = get_batch(streams, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            print("bench step %d: %.2f s, loss %.3f" % (i, time.time() - t, float(loss)),
                  flush=True)
        return

    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    log_path = os.path.join(args.out, "train_log.jsonl")
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])
        step, elapsed = ck["step"], ck["elapsed"]
        print("train: resumed at step %d" % step, flush=True)
    else:
        open(log_path, "w").close()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(CFG.to_dict(), f, indent=2)

    def log(rec):
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    run_loss, run_n = 0.0, 0
    t0 = time.time()
    while step < args.steps:
        if step % EVAL_EVERY == 0:
            log({"step": step, "tokens": step * BATCH * SEQ, "elapsed_s": round(elapsed, 1),
                 "train_loss": round(run_loss / run_n, 4) if run_n else None,
                 "heldout_loss": round(evaluate(model, held_text), 4),
                 "heldout_chat_loss": round(evaluate(model, held_chat), 4),
                 "lr": lr_at(step, args.steps)})
            run_loss, run_n = 0.0, 0
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "step": step, "elapsed": elapsed}, ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
        lr = lr_at(step, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(streams, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        run_loss += float(loss)
        run_n += 1
        step += 1
        now = time.time()
        elapsed += now - t0
        t0 = now
        if step % 20 == 0:
            print("step %d loss %.4f lr %.2e %.2f s/step" % (step, float(loss), lr,
                                                             elapsed / step), flush=True)

    log({"step": step, "tokens": step * BATCH * SEQ, "elapsed_s": round(elapsed, 1),
         "train_loss": round(run_loss / run_n, 4) if run_n else None,
         "heldout_loss": round(evaluate(model, held_text), 4),
         "heldout_chat_loss": round(evaluate(model, held_chat), 4), "lr": lr_at(step, args.steps)})
    torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
    print("train: done in %.0f s" % elapsed, flush=True)


if __name__ == "__main__":
    main()
