"""Reference checks: the engine's logits against the independent reference (tools/reference).

For every generated test model (build/genmodel: each architecture x each tensor type, plus GQA/MHA,
tied/untied output, llama3/linear RoPE scaling, qwen3 with head_dim*n_head != n_embd) and several
fixed token sequences (one longer than 64 tokens), this runs `edgellm logits ... --all` for the
final layer and for every exit layer, and compares with the reference forward pass in float64 on
the same (dequantized) weights:

  F32 models      max |engine - reference| <= 1e-3 at every position and every exit layer, and the
                  same 32-token greedy continuation.
  F16/BF16/Q8_0/  rel = max|diff| / max|ref| over all positions of a sequence, and top-1 agreement
  Q4_0 models     (fraction of positions whose argmax is the same), within the bounds in TOLERANCES
                  below (each bound says where it comes from).

It first runs the reference's own self-tests (tests/reference/selftest.py), so a broken reference
cannot pass silently. Prints one table row per check and exits 1 if any check fails.

usage: /usr/bin/python3 tests/reference/run.py [-k SUBSTRING] [--edgellm BIN] [--genmodel BIN]
Binaries default to $BUILD/edgellm and $BUILD/genmodel (BUILD defaults to build).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
sys.path.insert(0, HERE)

import model as refmodel  # noqa: E402
import selftest  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Tolerances

F32_ABS = 1e-3  # the bound; float32 accumulation over these sizes gives ~1e-5
GREEDY_TOKENS = 32

# (max rel, min top-1 agreement) for models whose weights are not F32. The reference runs on the
# dequantized weights, so the weights themselves are identical on both sides; what differs is how
# the engine treats activations. Bounds are measured values (see the table at the end of a run,
# column "measured") times a margin of about 3, rounded up.
TOLERANCES = {
    # F16/BF16 weights: the engine converts each weight to f32 exactly and multiplies in f32, so
    # only f32 rounding remains and the F32 bound applies (as a relative bound, since it is
    # judged with the same relative measure as the quantized types).
    "f16": (1e-4, 1.0),
    "bf16": (1e-4, 1.0),
    # Q8_0/Q4_0 weights: the engine quantizes the activation vector to Q8_0 (blocks of 32, 8-bit,
    # per-block f16 scale) before every dot product; the relative rounding error of one activation
    # is up to 1/254 of its block's maximum. Over 3 layers this reaches the logits as a relative
    # error of about 1e-2; top-1 changes only where two logits are within that much.
    "q8_0": (3e-2, 0.95),
    "q4_0": (3e-2, 0.95),
}

# ---------------------------------------------------------------------------------------------
# Test models

BASE = dict(n_embd=64, n_layer=3, n_head=4, n_head_kv=2, n_ff=96, n_vocab=320, ctx=256)
TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")


def model_matrix():
    """List of (name, genmodel options dict, type)."""
    out = []
    seed = 1
    for arch in ("llama", "qwen2", "qwen3"):
        for t in TYPES:
            out.append((f"{arch}-{t}", dict(BASE, arch=arch, seed=seed), t))
            seed += 1
    variants = [
        ("llama-mha-tied", dict(n_head_kv=4, tied=True), ("f32", "q8_0")),
        ("llama-gqa4", dict(n_head=8, n_head_kv=2), ("f32",)),
        ("llama-rope-llama3", dict(rope_scaling="llama3"), ("f32", "q4_0")),
        ("llama-rope-linear", dict(rope_scaling="linear"), ("f32", "bf16")),
        ("qwen2-mha-tied", dict(arch="qwen2", n_head_kv=4, tied=True), ("f32", "f16")),
        ("qwen3-hd32", dict(arch="qwen3", head_dim=32), ("f32", "q8_0", "q4_0")),
        ("qwen3-hd8-mqa-tied", dict(arch="qwen3", head_dim=8, n_head_kv=1, tied=True), ("f32",)),
    ]
    for name, opts, types in variants:
        for t in types:
            o = dict(BASE, arch="llama", seed=seed)
            o.update(opts)
            out.append((f"{name}-{t}", o, t))
            seed += 1
    return out


def sequences(n_vocab):
    """Fixed token sequences: one token, a short one with a repeat, and one of 80 tokens."""
    long_seq = [(7 + 131 * i + (i * i) % 17) % n_vocab for i in range(80)]
    return {
        "len1": [1],
        "len7": [1, 5, 9, 200 % n_vocab, 37, 37, 64],
        "len80": long_seq,
    }


# ---------------------------------------------------------------------------------------------
# Running the engine


class EngineError(Exception):
    pass


def run_cmd(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise EngineError(f"`{' '.join(cmd)}` exited {p.returncode}: {p.stderr.strip()[:500]}")
    return p.stdout


def genmodel(genbin, opts, t, path):
    cmd = [genbin, "--arch", opts["arch"], "--type", t, "--seed", str(opts["seed"])]
    for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "head_dim", "n_ff", "n_vocab", "ctx"):
        if k in opts:
            cmd += ["--" + k.replace("_", "-"), str(opts[k])]
    if opts.get("tied"):
        cmd.append("--tied")
    if opts.get("rope_scaling"):
        cmd += ["--rope-scaling", opts["rope_scaling"]]
    run_cmd(cmd + ["-o", path])


def engine_logits(edgellm, path, ids, exit_layer=None, greedy=0):
    cmd = [edgellm, "logits", "-m", path, "--ids", ",".join(map(str, ids)), "--all"]
    if exit_layer is not None:
        cmd += ["--exit", str(exit_layer)]
    if greedy:
        cmd += ["--greedy", str(greedy)]
    out = run_cmd(cmd)
    try:
        j = json.loads(out)
    except json.JSONDecodeError as e:
        raise EngineError(f"`{' '.join(cmd[:4])} ...` printed invalid JSON: {e}")
    for k in ("n_vocab", "n_layer", "exit", "positions", "logits"):
        if k not in j:
            raise EngineError(f"engine JSON lacks key {k!r}")
    if j["positions"] != list(range(len(ids))):
        raise EngineError(f"engine positions {j['positions'][:5]}... != 0..{len(ids) - 1}")
    return j


# ---------------------------------------------------------------------------------------------
# Checks


class Result:
    """One model's measurements (worst case over its sequences) and its failures."""

    def __init__(self, name, t):
        self.name, self.t = name, t
        self.final = 0.0  # F32: max|diff|; others: rel
        self.exits = 0.0  # the same over exit layers 0..n_layer-2
        self.agree = 0  # positions (over all sequences and exits) whose argmax is the same
        self.n_pos = 0
        self.greedy = []  # tokens matched, per greedy sequence
        self.failures = []

    @property
    def top1(self):
        return self.agree / self.n_pos if self.n_pos else 1.0

    def fail(self, msg):
        self.failures.append(msg)
        print(f"FAIL {self.name}: {msg}", flush=True)


def worst(eng, ref):
    """(max abs diff, position, token) of two (T, V) arrays."""
    d = np.abs(eng - ref)
    p, v = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(d[p, v]), int(p), int(v)


def compare(res, tag, eng, ref, is_exit):
    if eng.shape != ref.shape:
        res.fail(f"{tag}: engine logits shape {eng.shape}, reference {ref.shape}")
        return
    d, p, v = worst(eng, ref)
    res.agree += int(np.sum(eng.argmax(axis=1) == ref.argmax(axis=1)))
    res.n_pos += eng.shape[0]
    where = f"position {p}, token {v}: engine {eng[p, v]:.6f} reference {ref[p, v]:.6f}"
    if res.t == "f32":
        m, bound = d, F32_ABS
        if d > F32_ABS:
            res.fail(f"{tag}: max|diff| {d:.2e} > {F32_ABS:.0e} at {where}")
    else:
        max_rel = TOLERANCES[res.t][0]
        m = d / float(np.abs(ref).max())
        if m > max_rel:
            res.fail(f"{tag}: rel {m:.2e} > {max_rel:.0e}, worst at {where}")
    if is_exit:
        res.exits = max(res.exits, m)
    else:
        res.final = max(res.final, m)


def check_greedy(res, tag, model, ids, eng_tokens):
    ref_tokens = model.greedy(ids, GREEDY_TOKENS)
    same = sum(1 for a, b in zip(eng_tokens, ref_tokens) if a == b)
    res.greedy.append(same)
    if eng_tokens == ref_tokens:
        return
    k = next((i for i, (a, b) in enumerate(zip(eng_tokens, ref_tokens)) if a != b),
             min(len(eng_tokens), len(ref_tokens)))
    msg = f"{tag}: greedy differs first at step {k}: engine {eng_tokens[k:k + 1]} reference {ref_tokens[k]}"
    if k < len(eng_tokens):
        lg = model.logits(ids + ref_tokens[:k])[-1]
        msg += f" (reference logit gap between them {float(lg[ref_tokens[k]] - lg[eng_tokens[k]]):.2e})"
    res.fail(msg)


def check_model(res, edgellm, path):
    model = refmodel.load(path)
    n_layer = model.cfg.n_layer
    for sname, ids in sequences(model.cfg.n_vocab).items():
        hidden = model.hidden_states(ids)
        for L in range(n_layer):
            final = L == n_layer - 1
            want_greedy = GREEDY_TOKENS if (final and res.t == "f32" and len(ids) > 1) else 0
            tag = f"{sname} {'final' if final else f'exit {L}'}"
            j = engine_logits(edgellm, path, ids, None if final else L, want_greedy)
            if j["n_vocab"] != model.cfg.n_vocab or j["n_layer"] != n_layer or j["exit"] != L:
                res.fail(f"{tag}: engine n_vocab/n_layer/exit {j['n_vocab']}/{j['n_layer']}/"
                         f"{j['exit']}, expected {model.cfg.n_vocab}/{n_layer}/{L}")
                continue
            eng = np.asarray(j["logits"], dtype=np.float64)
            compare(res, tag, eng, model.head(hidden[L]).numpy(), not final)
            if want_greedy:
                if "greedy" not in j:
                    res.fail(f"{tag}: engine JSON has no 'greedy' key")
                else:
                    check_greedy(res, f"{sname} greedy", model, ids, j["greedy"])
    if res.t != "f32" and res.top1 < TOLERANCES[res.t][1]:
        res.fail(f"top-1 agreement {res.top1:.3f} ({res.agree}/{res.n_pos} positions over all "
                 f"sequences and exits) < {TOLERANCES[res.t][1]}")


def print_table(results):
    print(f"\n{'model':24} {'type':5} {'final':>9} {'exits':>9} {'bound':>7} {'top1':>6} "
          f"{'min top1':>8} {'greedy':>9}  result")
    for r in results:
        if r.t == "f32":
            bound, mtop1 = f"{F32_ABS:.0e}", "-"
            g = "/".join(f"{x}" for x in r.greedy) + f" of {GREEDY_TOKENS}" if r.greedy else "-"
        else:
            bound, mtop1 = f"{TOLERANCES[r.t][0]:.0e}", f"{TOLERANCES[r.t][1]}"
            g = "-"
        print(f"{r.name:24} {r.t:5} {r.final:9.2e} {r.exits:9.2e} {bound:>7} {r.top1:6.3f} "
              f"{mtop1:>8} {g:>9}  {'ok' if not r.failures else 'FAIL (%d)' % len(r.failures)}")
    print("final/exits: F32 max|engine - reference|; other types max|diff| / max|reference|, "
          "worst over sequences (len1, len7, len80)")


def main():
    build = os.environ.get("BUILD", "build")
    ap = argparse.ArgumentParser(description="engine vs reference logits checks")
    ap.add_argument("-k", default="", help="only models whose name contains this")
    ap.add_argument("--edgellm", default=os.path.join(ROOT, build, "edgellm"))
    ap.add_argument("--genmodel", default=os.path.join(ROOT, build, "genmodel"))
    ap.add_argument("--models-dir", default=os.path.join(ROOT, build, "ref-models"))
    ap.add_argument("--no-selftest", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()

    if not a.no_selftest:
        print("== reference self-tests")
        if selftest.main() != 0:
            print("reference self-tests failed: not comparing the engine against it")
            return 1

    for b in (a.edgellm, a.genmodel):
        if not os.access(b, os.X_OK):
            print(f"run.py: {b} missing (build it with `make`)", file=sys.stderr)
            return 1
    os.makedirs(a.models_dir, exist_ok=True)

    print("== engine vs reference")
    results = []
    for name, opts, t in model_matrix():
        if a.k not in name:
            continue
        path = os.path.join(a.models_dir, name + ".gguf")
        res = Result(name, t)
        results.append(res)
        t1 = time.time()
        try:
            genmodel(a.genmodel, opts, t, path)
            check_model(res, a.edgellm, path)
        except (EngineError, refmodel.ModelError, OSError, ValueError) as e:
            res.fail(str(e))
        print(f"  {name:24s} {time.time() - t1:5.1f}s", flush=True)

    print_table(results)
    n_fail = sum(1 for r in results if r.failures)
    print(f"\n{len(results)} models in {time.time() - t0:.0f}s")
    print(f"reference: {len(results) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
