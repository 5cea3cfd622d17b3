"""Self-tests of the reference implementation (tools/reference), independent of the engine.

Checks that the GGUF reader decodes every metadata type and the F32/F16/BF16/Q8_0/Q4_0 layouts
as the specification lays them out (blocks built byte by byte here, not by the writer's
quantizers), that the forward pass agrees with a second, loop-by-loop formulation using a
token-by-token KV cache and complex-number RoPE, that it is causal, and that a Hugging Face
directory and a GGUF file of the same llama weights (q/k rows permuted the way GGUF converters
do) give the same logits — which proves the two RoPE orderings are applied consistently.

usage: /usr/bin/python3 tests/reference/selftest.py   (exit status 0 = all passed)
"""

import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))

import gguf  # noqa: E402
import model as refmodel  # noqa: E402
from ggufwriter import write_gguf  # noqa: E402

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail else ''}")


# ---------------------------------------------------------------------------------------------
# GGUF reader


def test_metadata(tmp):
    T = gguf
    md = {
        "a.u8": (T.T_U8, 200),
        "a.i8": (T.T_I8, -100),
        "a.u16": (T.T_U16, 60000),
        "a.i16": (T.T_I16, -30000),
        "a.u32": (T.T_U32, 4000000000),
        "a.i32": (T.T_I32, -2000000000),
        "a.f32": (T.T_F32, 1.5),
        "a.bool": (T.T_BOOL, True),
        "a.str": (T.T_STRING, "héllo"),
        "a.u64": (T.T_U64, 2**63 + 5),
        "a.i64": (T.T_I64, -(2**62)),
        "a.f64": (T.T_F64, math.pi),
        "a.arr_i32": (T.T_ARRAY, T.T_I32, [1, -2, 3]),
        "a.arr_str": (T.T_ARRAY, T.T_STRING, ["x", "", "yz"]),
        "a.arr_nested": (T.T_ARRAY, T.T_ARRAY, [[1, 2], [3]]),
        "a.arr_empty": (T.T_ARRAY, T.T_F32, []),
    }
    # nested arrays need the inner element type: build that value by hand
    for version, align in ((3, 32), (2, 64)):
        path = os.path.join(tmp, f"md{version}.gguf")
        md2 = dict(md)
        del md2["a.arr_nested"]
        write_gguf(path, md2, [("t", np.arange(64, dtype=np.float32), "F32")], align, version)
        g = gguf.GGUFFile(path)
        ok = g.version == version and g.alignment == align
        for k, v in md2.items():
            want = v[-1]
            got = g.get(k)
            if isinstance(want, float):
                ok &= abs(got - want) < 1e-6
            else:
                ok &= got == want
        ok &= np.array_equal(g.array("t", np.float32), np.arange(64, dtype=np.float32))
        ok &= g.data_offset % align == 0
        check(f"gguf v{version} metadata of every type, alignment {align}", ok)

    # nested array, written by hand: key, type ARRAY, elem type ARRAY, count 2, then two arrays
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    inner = lambda vals: struct.pack("<IQ", T.T_U16, len(vals)) + b"".join(  # noqa: E731
        struct.pack("<H", v) for v in vals
    )
    kv = s("n.nested") + struct.pack("<IIQ", T.T_ARRAY, T.T_ARRAY, 2) + inner([7, 8]) + inner([9])
    buf = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
    path = os.path.join(tmp, "nested.gguf")
    with open(path, "wb") as f:
        f.write(buf)
    g = gguf.GGUFFile(path)
    check("gguf nested arrays", g.get("n.nested") == [[7, 8], [9]])

    # truncated file: clear error, not a crash
    with open(path, "wb") as f:
        f.write(buf[:-3])
    try:
        gguf.GGUFFile(path)
        check("gguf truncated file is an error", False)
    except gguf.GGUFError as e:
        check("gguf truncated file is an error", "truncated" in str(e), str(e))


def _raw_tensor_file(tmp, name, type_id, ne, data):
    """GGUF with one tensor whose bytes are given verbatim."""
    b = name.encode()
    info = struct.pack("<Q", len(b)) + b + struct.pack("<I", len(ne))
    info += b"".join(struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", type_id, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    head += b"\0" * ((-len(head)) % 32)
    path = os.path.join(tmp, name + ".gguf")
    with open(path, "wb") as f:
        f.write(head + data)
    return gguf.GGUFFile(path).tensor(name)


def test_dequant(tmp):
    # F16 / BF16 / F32: known bit patterns
    t = _raw_tensor_file(tmp, "f16", 1, [4], struct.pack("<4H", 0x3C00, 0xC000, 0x3555, 0x7BFF))
    check("dequant F16", np.allclose(t.array(), [1.0, -2.0, 0.333251953125, 65504.0], rtol=0))
    t = _raw_tensor_file(tmp, "bf16", 30, [3], struct.pack("<3H", 0x3F80, 0xC0A0, 0x3EAB))
    check("dequant BF16", np.array_equal(t.array(), [1.0, -5.0, 0.333984375]))
    t = _raw_tensor_file(tmp, "f32", 0, [2, 1], struct.pack("<2f", 0.25, -7.0))
    check("dequant F32 shape is reversed ne", t.array().shape == (1, 2))

    # Q8_0: two blocks, d = 0.5 and -0.25 (f16), q = -16..15 and 0..31
    q1 = np.arange(-16, 16, dtype=np.int8)
    q2 = np.arange(32, dtype=np.int8)
    data = struct.pack("<H", 0x3800) + q1.tobytes() + struct.pack("<H", 0xB400) + q2.tobytes()
    t = _raw_tensor_file(tmp, "q8", 8, [64], data)
    want = np.concatenate([0.5 * q1, -0.25 * q2])
    check("dequant Q8_0", np.array_equal(t.array(), want))

    # Q4_0: d = 2.0; byte j = lo | hi<<4 with lo = j, hi = 15 - j
    qs = bytes((j | ((15 - j) << 4)) for j in range(16))
    t = _raw_tensor_file(tmp, "q4", 2, [32], struct.pack("<H", 0x4000) + qs)
    want = 2.0 * (np.concatenate([np.arange(16), 15 - np.arange(16)]) - 8)
    check("dequant Q4_0 nibble order", np.array_equal(t.array(), want))

    # writer quantizers round-trip within their step
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    path = os.path.join(tmp, "rt.gguf")
    write_gguf(path, {}, [(n, x, n) for n in ("F32", "F16", "BF16", "Q8_0", "Q4_0")])
    g = gguf.GGUFFile(path)
    amax = np.abs(x).max()
    errs = {n: np.abs(g.array(n) - x).max() / amax for n in ("F32", "F16", "BF16", "Q8_0", "Q4_0")}
    ok = errs["F32"] == 0 and errs["F16"] < 1e-3 and errs["BF16"] < 4e-3
    ok &= errs["Q8_0"] < 1 / 127 and errs["Q4_0"] < 1 / 7
    check("writer quantizers round-trip", ok, " ".join(f"{k}={v:.2e}" for k, v in errs.items()))


# ---------------------------------------------------------------------------------------------
# Random models


def random_model(arch, seed, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=None, n_ff=96,
                 n_vocab=128, tied=False, scaling="none"):
    """(metadata, {gguf name: float32 array}) of a random model, in HF (unpermuted) row order."""
    rng = np.random.default_rng(seed)
    hd = head_dim or n_embd // n_head

    def mat(o, i):
        return (rng.standard_normal((o, i)) / math.sqrt(i)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((n_vocab, n_embd)).astype(np.float32)}
    for L in range(n_layer):
        p = f"blk.{L}."
        w[p + "attn_norm.weight"] = norm(n_embd)
        w[p + "attn_q.weight"] = mat(n_head * hd, n_embd)
        w[p + "attn_k.weight"] = mat(n_head_kv * hd, n_embd)
        w[p + "attn_v.weight"] = mat(n_head_kv * hd, n_embd)
        w[p + "attn_output.weight"] = mat(n_embd, n_head * hd)
        w[p + "ffn_norm.weight"] = norm(n_embd)
        w[p + "ffn_gate.weight"] = mat(n_ff, n_embd)
        w[p + "ffn_up.weight"] = mat(n_ff, n_embd)
        w[p + "ffn_down.weight"] = mat(n_embd, n_ff)
        if arch == "qwen2":
            for t, n in (("q", n_head), ("k", n_head_kv), ("v", n_head_kv)):
                w[p + f"attn_{t}.bias"] = (0.5 * rng.standard_normal(n * hd)).astype(np.float32)
        if arch == "qwen3":
            w[p + "attn_q_norm.weight"] = norm(hd)
            w[p + "attn_k_norm.weight"] = norm(hd)
    w["output_norm.weight"] = norm(n_embd)
    if not tied:
        w["output.weight"] = mat(n_vocab, n_embd)
    md = {
        "general.architecture": arch,
        f"{arch}.embedding_length": n_embd,
        f"{arch}.block_count": n_layer,
        f"{arch}.feed_forward_length": n_ff,
        f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_head_kv,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{arch}.rope.freq_base": 10000.0,
        f"{arch}.context_length": 256,
    }
    if head_dim:
        md[f"{arch}.attention.key_length"] = hd
        md[f"{arch}.attention.value_length"] = hd
    rs = None
    if scaling == "linear":
        md[f"{arch}.rope.scaling.type"] = "linear"
        md[f"{arch}.rope.scaling.factor"] = 4.0
        rs = {"rope_type": "linear", "factor": 4.0}
    elif scaling == "llama3":
        # small original context so that all three wavelength bands occur at head_dim 16
        rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        div = refmodel.llama3_freq_divisors(rs, 10000.0, hd)
        w["rope_freqs.weight"] = div.astype(np.float32)
    return md, w, rs


def permute_qk(wt, n_head):
    """HF (neox rotary) rows -> GGUF llama (adjacent-pair rotary) rows, per head:
    (n_head, 2, hd/2, in) -> (n_head, hd/2, 2, in)."""
    out_dim, in_dim = wt.shape
    hd = out_dim // n_head
    return wt.reshape(n_head, 2, hd // 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)


def write_model_gguf(path, md, w, n_head, n_head_kv, permute, tname="F32"):
    tensors = []
    for name, a in w.items():
        if permute and name.endswith("attn_q.weight"):
            a = permute_qk(a, n_head)
        if permute and name.endswith("attn_k.weight"):
            a = permute_qk(a, n_head_kv)
        t = tname if (a.ndim == 2 and not name.startswith("rope")) else "F32"
        tensors.append((name, a, t))
    write_gguf(path, md, tensors)


def write_safetensors(path, arrays, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name, a in arrays.items():
        if dtype == "BF16":
            data = (np.ascontiguousarray(a, "<f4").view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(a, {"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_model_hf(d, arch, md, w, rs, n_shards=2, dtype="F32"):
    os.makedirs(d, exist_ok=True)
    g = lambda k: md[f"{arch}.{k}"]  # noqa: E731
    n_embd, n_head = g("embedding_length"), g("attention.head_count")
    cfg = {
        "model_type": arch,
        "hidden_size": n_embd,
        "num_hidden_layers": g("block_count"),
        "intermediate_size": g("feed_forward_length"),
        "num_attention_heads": n_head,
        "num_key_value_heads": g("attention.head_count_kv"),
        "head_dim": md.get(f"{arch}.attention.key_length", n_embd // n_head),
        "rms_norm_eps": g("attention.layer_norm_rms_epsilon"),
        "rope_theta": g("rope.freq_base"),
        "vocab_size": w["token_embd.weight"].shape[0],
        "tie_word_embeddings": "output.weight" not in w,
        "rope_scaling": rs,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    inv_layer = {v: k for k, v in refmodel._HF_LAYER_NAMES.items()}
    inv_glob = {v: k for k, v in refmodel._HF_GLOBAL_NAMES.items()}
    hf = {}
    for name, a in w.items():
        if name in inv_glob:
            hf[inv_glob[name]] = a
        elif name.startswith("blk."):
            _, L, sub = name.split(".", 2)
            hf[f"model.layers.{L}.{inv_layer[sub]}"] = a
    names = sorted(hf)
    shards = [names[i::n_shards] for i in range(n_shards)]
    wmap = {}
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        write_safetensors(os.path.join(d, fn), {n: hf[n] for n in sh}, dtype)
        wmap.update({n: fn for n in sh})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wmap}, f)


# ---------------------------------------------------------------------------------------------
# A second formulation of the forward pass: numpy, one token at a time with a KV cache, one head
# at a time, RoPE as multiplication by a complex phase.


def naive_logits(m, ids):
    c, W = m.cfg, {k: v.numpy() for k, v in m.w.items()}
    half = c.rot_dim // 2
    inv = c.rope_base ** (-np.arange(half) * 2.0 / c.rot_dim)
    if c.freq_divisors is not None:
        inv = inv / c.freq_divisors

    def norm(x, w):
        return x / np.sqrt(np.mean(x * x) + c.eps) * w

    def rot(v, pos):
        v = v.copy()
        if c.rope_order == "normal":
            z = v[0 : c.rot_dim : 2] + 1j * v[1 : c.rot_dim : 2]
        else:
            z = v[:half] + 1j * v[half : c.rot_dim]
        z = z * np.exp(1j * (pos / c.pos_scale) * inv)
        if c.rope_order == "normal":
            v[0 : c.rot_dim : 2], v[1 : c.rot_dim : 2] = z.real, z.imag
        else:
            v[:half], v[half : c.rot_dim] = z.real, z.imag
        return v

    cache = [([], []) for _ in range(c.n_layer)]
    out = []
    for pos, tok in enumerate(ids):
        x = W["token_embd.weight"][tok].copy()
        for L in range(c.n_layer):
            p = f"blk.{L}."
            n = norm(x, W[p + "attn_norm.weight"])
            q, k, v = (W[p + f"attn_{t}.weight"] @ n for t in "qkv")
            if c.arch == "qwen2":
                q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
            ks, vs = cache[L]
            kh_all = []
            for h in range(c.n_head_kv):
                kh = k[h * c.head_dim : (h + 1) * c.head_dim]
                if c.arch == "qwen3":
                    kh = norm(kh, W[p + "attn_k_norm.weight"])
                kh_all.append(rot(kh, pos))
            ks.append(kh_all)
            vs.append([v[h * c.head_dim_v : (h + 1) * c.head_dim_v] for h in range(c.n_head_kv)])
            att = []
            for h in range(c.n_head):
                qh = q[h * c.head_dim : (h + 1) * c.head_dim]
                if c.arch == "qwen3":
                    qh = norm(qh, W[p + "attn_q_norm.weight"])
                qh = rot(qh, pos)
                g = h // (c.n_head // c.n_head_kv)
                s = np.array([qh @ ks[t][g] for t in range(pos + 1)]) / math.sqrt(c.head_dim)
                e = np.exp(s - s.max())
                e /= e.sum()
                att.append(sum(e[t] * vs[t][g] for t in range(pos + 1)))
            x = x + W[p + "attn_output.weight"] @ np.concatenate(att)
            n = norm(x, W[p + "ffn_norm.weight"])
            a = W[p + "ffn_gate.weight"] @ n
            x = x + W[p + "ffn_down.weight"] @ (a / (1 + np.exp(-a)) * (W[p + "ffn_up.weight"] @ n))
        out.append(W["output.weight"] @ norm(x, W["output_norm.weight"]))
    return np.array(out)


def maxdiff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def test_forward(tmp):
    ids = [3, 17, 99, 4, 4, 60, 1, 127, 0, 42, 5, 77]
    cases = [
        ("llama", dict(n_head=4, n_head_kv=2, scaling="llama3")),
        ("llama", dict(n_head=4, n_head_kv=4, tied=True, scaling="linear")),
        ("qwen2", dict(n_head=4, n_head_kv=1)),
        ("qwen3", dict(n_head=4, n_head_kv=2, head_dim=24, tied=True)),
    ]
    for i, (arch, kw) in enumerate(cases):
        md, w, rs = random_model(arch, 100 + i, **kw)
        label = f"{arch} {kw}"
        gpath = os.path.join(tmp, f"m{i}.gguf")
        permute = arch == "llama"
        write_model_gguf(gpath, md, w, kw["n_head"], kw["n_head_kv"], permute)
        mg = refmodel.load(gpath)
        lg = mg.logits(ids).numpy()

        d = maxdiff(lg, naive_logits(mg, ids))
        check(f"forward == token-by-token formulation: {label}", d < 1e-9, f"max diff {d:.1e}")

        d = maxdiff(lg[:5], mg.logits(ids[:5]).numpy())
        check(f"causal (prefix logits unchanged): {label}", d < 1e-9, f"max diff {d:.1e}")

        hd = os.path.join(tmp, f"hf{i}")
        write_model_hf(hd, arch, md, w, rs)
        mh = refmodel.load(hd)
        # GGUF keeps eps and rope_freqs as f32 while config.json has them in f64: ~1e-9 apart
        d = maxdiff(lg, mh.logits(ids).numpy())
        check(f"HF dir == GGUF{' (q/k permuted)' if permute else ''}: {label}", d < 1e-7,
              f"max diff {d:.1e}")
        dx = max(maxdiff(mg.logits(ids, L).numpy(), mh.logits(ids, L).numpy())
                 for L in range(mg.cfg.n_layer))
        check(f"HF dir == GGUF at every exit: {label}", dx < 1e-7, f"max diff {dx:.1e}")

        if permute:
            # without the permutation the orderings must NOT agree (the test has teeth)
            bad = os.path.join(tmp, f"m{i}_unpermuted.gguf")
            write_model_gguf(bad, md, w, kw["n_head"], kw["n_head_kv"], False)
            d = maxdiff(lg, refmodel.load(bad).logits(ids).numpy())
            check(f"unpermuted llama GGUF differs from HF: {label}", d > 1e-3, f"max diff {d:.1e}")

    # HF BF16 / F16 shards load as the same values
    md, w, rs = random_model("qwen2", 7)
    for dt in ("F16", "BF16"):
        hd = os.path.join(tmp, f"hf_{dt}")
        write_model_hf(hd, "qwen2", md, w, rs, n_shards=1, dtype=dt)
        mh = refmodel.load(hd)
        x = w["blk.1.ffn_up.weight"]
        err = maxdiff(mh.w["blk.1.ffn_up.weight"].numpy(), x) / np.abs(x).max()
        check(f"HF {dt} safetensors values", err < (1e-3 if dt == "F16" else 8e-3), f"{err:.1e}")

    # last layer exit == ordinary logits; greedy is deterministic and uses argmax
    m = refmodel.load(os.path.join(tmp, "m0.gguf"))
    g = m.greedy([1, 2, 3], 5)
    seq = [1, 2, 3]
    for _ in range(5):
        seq.append(int(np.argmax(naive_logits(m, seq)[-1])))
    check("greedy == argmax of token-by-token formulation", g == seq[3:], str(g))


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        test_metadata(tmp)
        test_dequant(tmp)
        test_forward(tmp)
    n_fail = sum(1 for _, ok in RESULTS if not ok)
    print(f"selftest: {len(RESULTS) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
