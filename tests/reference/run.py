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

import gguf  # noqa: E402
import model as refmodel  # noqa: E402
import selftest  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Tolerances

F32_ABS = 1e-3  # the bound the engine must meet; measured at most 2.3e-5 (f32 rounding)
GREEDY_TOKENS = 32

# (max rel, min top-1 agreement) for models whose weights are not F32. rel = max|diff| / max|ref|
# over a sequence's logits; top-1 = share of positions (all sequences and exit layers pooled)
# whose argmax is the same. The reference runs on the dequantized weights, so the weights are
# identical on both sides; what differs is how the engine treats activations.
TOLERANCES = {
    # F16/BF16: the engine widens each weight exactly to f32 and multiplies in f32, so only f32
    # rounding remains: measured rel <= 6.0e-7, the same as the F32 models' rel (<= 6.5e-7).
    # 1e-5 leaves 15x for other summation orders (SIMD kernels, thread splits) while staying far
    # below what rounding the activations to half precision would give (simulated: ~8e-4 for f16,
    # ~5e-3 for bf16), so such a kernel change shows up here and has to revise this bound openly.
    "f16": (1e-5, 1.0),
    "bf16": (1e-5, 1.0),
    # Q8_0/Q4_0: the engine quantizes every activation vector to Q8_0 (blocks of 32, 8 bits,
    # an f16 scale per block) before each dot product, an error of up to 1/254 of the block's
    # largest value per activation. Measured rel <= 2.1e-2 (Q8_0) and 1.9e-2 (Q4_0); simulating
    # just that activation rounding on float32 weights gives 1.5e-2..2.4e-2, so the difference is
    # that rounding and nothing else. Bound 6e-2 = about 3x the worst measured. Q4_0 is no worse
    # than Q8_0 because the weight rounding is on both sides. Top-1 measured >= 0.972 over 264
    # positions per model (flips only where two logits are within the rounding); bound 0.9.
    # A real defect (wrong nibble order, scale, block stride) gives rel of order 1.
    "q8_0": (6e-2, 0.9),
    "q4_0": (6e-2, 0.9),
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


def engine_logits(edgellm, path, ids, exit_layer=None, greedy=0, extra=()):
    cmd = [edgellm, "logits", "-m", path, "--ids", ",".join(map(str, ids)), "--all", *extra]
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
        self.chunked = 0.0  # the same for len80 prefilled in chunks of 1 and of 7 tokens
        self.rel = 0.0  # max|diff| / max|ref| over everything (for every type)
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


def compare(res, tag, eng, ref, kind):
    if eng.shape != ref.shape:
        res.fail(f"{tag}: engine logits shape {eng.shape}, reference {ref.shape}")
        return
    d, p, v = worst(eng, ref)
    res.agree += int(np.sum(eng.argmax(axis=1) == ref.argmax(axis=1)))
    res.n_pos += eng.shape[0]
    where = f"position {p}, token {v}: engine {eng[p, v]:.6f} reference {ref[p, v]:.6f}"
    rel = d / float(np.abs(ref).max())
    res.rel = max(res.rel, rel)
    if res.t == "f32":
        m, bound = d, F32_ABS
        if d > F32_ABS:
            res.fail(f"{tag}: max|diff| {d:.2e} > {F32_ABS:.0e} at {where}")
    else:
        max_rel = TOLERANCES[res.t][0]
        m = rel
        if m > max_rel:
            res.fail(f"{tag}: rel {m:.2e} > {max_rel:.0e}, worst at {where}")
    setattr(res, kind, max(getattr(res, kind), m))


def check_greedy(res, tag, model, ids, eng_tokens):
    ref_tokens = model.greedy(ids, GREEDY_TOKENS)
    same = sum(1 for a, b in zip(eng_tokens, ref_tokens) if a == b)
    res.greedy.append(same)
    if eng_tokens == ref_tokens:
        return
    k = next((i for i, (a, b) in enumerate(zip(eng_tokens, ref_tokens)) if a != b),
             min(len(eng_tokens), len(ref_tokens)))
    got = eng_tokens[k] if k < len(eng_tokens) else "(none)"
    msg = f"{tag}: greedy differs first at step {k}: engine {got} reference {ref_tokens[k]}"
    if k < len(eng_tokens):
        lg = model.logits(ids + ref_tokens[:k])[-1]
        msg += f" (reference logit gap between them {float(lg[ref_tokens[k]] - lg[eng_tokens[k]]):.2e})"
    res.fail(msg)


def check_features(res, path, opts, model):
    """The generated file has what its variant is meant to exercise; otherwise a passing check
    would prove nothing about that feature."""
    g = gguf.GGUFFile(path)
    c = model.cfg
    want_type = res.t.upper()
    for name, t in g.tensors.items():
        if len(t.ne) == 2 and t.traits.name != want_type:
            res.fail(f"generated model: {name} is {t.traits.name}, expected {want_type}")
    tied = "output.weight" not in g.tensors
    if tied != bool(opts.get("tied")):
        res.fail(f"generated model: output head {'tied' if tied else 'untied'}, expected otherwise")
    want = {"n_head": opts["n_head"], "n_head_kv": opts["n_head_kv"], "arch": opts["arch"],
            "head_dim": opts.get("head_dim", opts["n_embd"] // opts["n_head"])}
    for k, v in want.items():
        if getattr(c, k) != v:
            res.fail(f"generated model: {k} = {getattr(c, k)}, expected {v}")
    rs = opts.get("rope_scaling", "none")
    has_llama3 = c.freq_divisors is not None and float(np.max(c.freq_divisors)) > 1.0
    has_linear = c.pos_scale != 1.0
    if has_llama3 != (rs == "llama3") or has_linear != (rs == "linear"):
        res.fail(f"generated model: rope scaling does not match --rope-scaling {rs}")


def check_model(res, edgellm, path, opts):
    model = refmodel.load(path)
    check_features(res, path, opts, model)
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
            compare(res, tag, eng, model.head(hidden[L]).numpy(), "final" if final else "exits")
            if want_greedy:
                if "greedy" not in j:
                    res.fail(f"{tag}: engine JSON has no 'greedy' key")
                else:
                    check_greedy(res, f"{sname} greedy", model, ids, j["greedy"])
    # the KV cache path: prefill in chunks (1 = token-by-token decode), with several threads
    ids = sequences(model.cfg.n_vocab)["len80"]
    ref = model.logits(ids).numpy()
    for extra in (("--batch", "1"), ("--batch", "7", "-t", "3")):
        j = engine_logits(edgellm, path, ids, extra=extra)
        compare(res, "len80 " + " ".join(extra), np.asarray(j["logits"]), ref, "chunked")
    if res.t != "f32" and res.top1 < TOLERANCES[res.t][1]:
        res.fail(f"top-1 agreement {res.top1:.3f} ({res.agree}/{res.n_pos} positions over all "
                 f"sequences and exits) < {TOLERANCES[res.t][1]}")


def print_table(results):
    print(f"\n{'model':24} {'type':5} {'final':>9} {'exits':>9} {'chunked':>9} {'bound':>7} "
          f"{'rel':>9} {'top1':>6} {'min':>5} {'greedy':>8}  result")
    for r in results:
        if r.t == "f32":
            bound, mtop1 = f"{F32_ABS:.0e}", "-"
            g = ",".join(f"{x}" for x in r.greedy) if r.greedy else "-"
        else:
            bound, mtop1 = f"{TOLERANCES[r.t][0]:.0e}", f"{TOLERANCES[r.t][1]}"
            g = "-"
        print(f"{r.name:24} {r.t:5} {r.final:9.2e} {r.exits:9.2e} {r.chunked:9.2e} {bound:>7} "
              f"{r.rel:9.2e} {r.top1:6.3f} {mtop1:>5} {g:>8}  "
              f"{'ok' if not r.failures else 'FAIL (%d)' % len(r.failures)}")
    print("final / exits / chunked (len80 prefilled 1 and 7 tokens at a time): F32 models "
          "max|engine - reference|,\nother types max|diff| / max|reference|; worst over the "
          "sequences (len1, len7, len80). rel: max|diff| / max|reference| for every type.\n"
          "top1: share of positions (all sequences and exits) with the same argmax; min: its "
          f"bound. greedy: tokens matched of {GREEDY_TOKENS} (after len7, after len80).")


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
            check_model(res, a.edgellm, path, opts)
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
