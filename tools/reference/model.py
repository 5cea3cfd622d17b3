"""Reference transformer forward pass (PyTorch, float64) for llama / qwen2 / qwen3.

Owns: loading hyperparameters and weights from a GGUF file (via gguf.py, dequantized) or from a
Hugging Face directory (config.json + safetensors, parsed here), and computing logits for every
position and for every exit layer.

Deliberately does not: cache keys/values, batch, or care about speed. Every step is written the
plain way so it can be read against the model definitions; it recomputes the whole sequence on
each call. It shares no code with the engine.

Conventions (T tokens, C = n_embd, H heads, Hkv kv heads, D head dim):
- weights are stored under their GGUF names, as float64 tensors of shape (out, in), y = W @ x;
- GGUF llama files rotate adjacent pairs (x[2i], x[2i+1]) ("normal" order) because converters
  permute the q/k rows; GGUF qwen2/qwen3 and every Hugging Face model rotate (x[i], x[i+rot/2])
  ("neox" order, HF's rotate_half) on unpermuted weights.
"""

import glob
import json
import math
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch

from gguf import GGUFFile

torch.set_default_dtype(torch.float64)

ARCHS = ("llama", "qwen2", "qwen3")


@dataclass
class Config:
    arch: str
    n_vocab: int
    n_embd: int  # C
    n_layer: int
    n_ff: int
    n_head: int  # H
    n_head_kv: int  # Hkv
    head_dim: int  # D of q and k
    head_dim_v: int  # D of v
    rot_dim: int  # leading dims of each head that rotate
    eps: float
    rope_base: float
    rope_order: str  # "normal" | "neox"
    pos_scale: float = 1.0  # linear rope scaling: positions are divided by this
    freq_divisors: np.ndarray = None  # (rot_dim/2,) llama3-style per-frequency divisors
    n_ctx: int = 0


class ModelError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Layers


def rmsnorm(x, w, eps):
    """x: (..., n), w: (n,). x / sqrt(mean(x^2) + eps) * w."""
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope_angles(cfg, positions):
    """positions: (T,) -> theta (T, rot_dim/2), theta[t, i] = pos_t * base^(-2i/rot) / div_i."""
    r = cfg.rot_dim
    i = torch.arange(r // 2, dtype=torch.float64)
    inv_freq = cfg.rope_base ** (-2.0 * i / r)
    if cfg.freq_divisors is not None:
        inv_freq = inv_freq / torch.as_tensor(cfg.freq_divisors, dtype=torch.float64)
    pos = torch.as_tensor(positions, dtype=torch.float64) / cfg.pos_scale
    return pos[:, None] * inv_freq[None, :]


def rope(x, theta, order):
    """x: (T, heads, D); theta: (T, rot/2). Rotates the first rot dims of every head."""
    half = theta.shape[1]
    r = 2 * half
    cos = torch.cos(theta)[:, None, :]
    sin = torch.sin(theta)[:, None, :]
    out = x.clone()
    if order == "normal":
        a, b = x[..., 0:r:2], x[..., 1:r:2]
        out[..., 0:r:2] = a * cos - b * sin
        out[..., 1:r:2] = a * sin + b * cos
    elif order == "neox":
        a, b = x[..., 0:half], x[..., half:r]
        out[..., 0:half] = a * cos - b * sin
        out[..., half:r] = a * sin + b * cos
    else:
        raise ValueError(order)
    return out


def attention(q, k, v, n_rep):
    """Causal attention with GQA. q: (T, H, D), k: (T, Hkv, D), v: (T, Hkv, Dv) -> (T, H*Dv).
    Query head h reads kv head h // n_rep."""
    T, H, D = q.shape
    k = k.repeat_interleave(n_rep, dim=1)
    v = v.repeat_interleave(n_rep, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return torch.einsum("hts,shd->thd", p, v).reshape(T, -1)


def silu(x):
    return x / (1.0 + torch.exp(-x))


# ---------------------------------------------------------------------------------------------
# Model


class Model:
    def __init__(self, cfg, weights):
        """cfg: Config; weights: dict GGUF name -> float64 torch tensor (takes ownership)."""
        self.cfg = cfg
        self.w = weights
        self._check()

    def _check(self):
        c = self.cfg
        if c.arch not in ARCHS:
            raise ModelError(f"unknown architecture {c.arch!r}")
        if c.n_head % c.n_head_kv != 0:
            raise ModelError(f"n_head {c.n_head} not a multiple of n_head_kv {c.n_head_kv}")
        expect = {
            "token_embd.weight": (c.n_vocab, c.n_embd),
            "output_norm.weight": (c.n_embd,),
            "output.weight": (c.n_vocab, c.n_embd),
        }
        for L in range(c.n_layer):
            p = f"blk.{L}."
            expect.update(
                {
                    p + "attn_norm.weight": (c.n_embd,),
                    p + "attn_q.weight": (c.n_head * c.head_dim, c.n_embd),
                    p + "attn_k.weight": (c.n_head_kv * c.head_dim, c.n_embd),
                    p + "attn_v.weight": (c.n_head_kv * c.head_dim_v, c.n_embd),
                    p + "attn_output.weight": (c.n_embd, c.n_head * c.head_dim_v),
                    p + "ffn_norm.weight": (c.n_embd,),
                    p + "ffn_gate.weight": (c.n_ff, c.n_embd),
                    p + "ffn_up.weight": (c.n_ff, c.n_embd),
                    p + "ffn_down.weight": (c.n_embd, c.n_ff),
                }
            )
            if c.arch == "qwen2":
                expect[p + "attn_q.bias"] = (c.n_head * c.head_dim,)
                expect[p + "attn_k.bias"] = (c.n_head_kv * c.head_dim,)
                expect[p + "attn_v.bias"] = (c.n_head_kv * c.head_dim_v,)
            if c.arch == "qwen3":
                expect[p + "attn_q_norm.weight"] = (c.head_dim,)
                expect[p + "attn_k_norm.weight"] = (c.head_dim,)
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w.get("token_embd.weight")
        for name, shape in expect.items():
            t = self.w.get(name)
            if t is None:
                raise ModelError(f"missing tensor {name}")
            if tuple(t.shape) != shape:
                raise ModelError(f"{name}: shape {tuple(t.shape)}, expected {shape}")

    def block(self, L, x, theta):
        """One transformer block. x: (T, C) -> (T, C)."""
        c, w, p = self.cfg, self.w, f"blk.{L}."
        T = x.shape[0]
        n = rmsnorm(x, w[p + "attn_norm.weight"], c.eps)
        q = n @ w[p + "attn_q.weight"].T
        k = n @ w[p + "attn_k.weight"].T
        v = n @ w[p + "attn_v.weight"].T
        if c.arch == "qwen2":
            q = q + w[p + "attn_q.bias"]
            k = k + w[p + "attn_k.bias"]
            v = v + w[p + "attn_v.bias"]
        q = q.reshape(T, c.n_head, c.head_dim)
        k = k.reshape(T, c.n_head_kv, c.head_dim)
        v = v.reshape(T, c.n_head_kv, c.head_dim_v)
        if c.arch == "qwen3":
            q = rmsnorm(q, w[p + "attn_q_norm.weight"], c.eps)
            k = rmsnorm(k, w[p + "attn_k_norm.weight"], c.eps)
        q = rope(q, theta, c.rope_order)
        k = rope(k, theta, c.rope_order)
        a = attention(q, k, v, c.n_head // c.n_head_kv)
        h = x + a @ w[p + "attn_output.weight"].T
        n = rmsnorm(h, w[p + "ffn_norm.weight"], c.eps)
        f = silu(n @ w[p + "ffn_gate.weight"].T) * (n @ w[p + "ffn_up.weight"].T)
        return h + f @ w[p + "ffn_down.weight"].T

    def hidden_states(self, ids):
        """ids: list of T token ids -> list of n_layer tensors (T, C): the residual stream after
        each block."""
        c = self.cfg
        for t in ids:
            if not 0 <= t < c.n_vocab:
                raise ModelError(f"token id {t} out of range [0, {c.n_vocab})")
        x = self.w["token_embd.weight"][torch.as_tensor(ids, dtype=torch.long)]
        theta = rope_angles(c, torch.arange(len(ids)))
        out = []
        for L in range(c.n_layer):
            x = self.block(L, x, theta)
            out.append(x)
        return out

    def head(self, h):
        """Final norm + output head. h: (T, C) -> logits (T, n_vocab)."""
        n = rmsnorm(h, self.w["output_norm.weight"], self.cfg.eps)
        return n @ self.w["output.weight"].T

    def logits(self, ids, exit_layer=None):
        """Logits (T, n_vocab) at exit layer exit_layer (default: the last block)."""
        L = self.cfg.n_layer - 1 if exit_layer is None else exit_layer
        if not 0 <= L < self.cfg.n_layer:
            raise ModelError(f"exit layer {L} out of range [0, {self.cfg.n_layer})")
        return self.head(self.hidden_states(ids)[L])

    def greedy(self, ids, n):
        """n token ids generated by argmax after ids, recomputing the whole sequence each step."""
        seq = list(ids)
        for _ in range(n):
            seq.append(int(torch.argmax(self.logits(seq)[-1])))
        return seq[len(ids) :]


# ---------------------------------------------------------------------------------------------
# Loading from GGUF


def load_gguf(path):
    g = GGUFFile(path)
    arch = g.get("general.architecture")
    if arch not in ARCHS:
        raise ModelError(f"{path}: unsupported architecture {arch!r}")

    def key(k, default=None):
        v = g.get(f"{arch}.{k}", default)
        if v is None:
            raise ModelError(f"{path}: missing metadata {arch}.{k}")
        return v

    n_embd = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    head_dim = int(key("attention.key_length", n_embd // n_head))
    emb = g.tensor("token_embd.weight")
    cfg = Config(
        arch=arch,
        n_vocab=int(emb.ne[1]),
        n_embd=n_embd,
        n_layer=int(key("block_count")),
        n_ff=int(key("feed_forward_length")),
        n_head=n_head,
        n_head_kv=int(key("attention.head_count_kv", n_head)),
        head_dim=head_dim,
        head_dim_v=int(key("attention.value_length", head_dim)),
        rot_dim=int(key("rope.dimension_count", head_dim)),
        eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_base=float(key("rope.freq_base", 10000.0)),
        rope_order="normal" if arch == "llama" else "neox",
        n_ctx=int(key("context_length", 0)),
    )
    stype = key("rope.scaling.type", "none")
    if stype == "linear":
        cfg.pos_scale = float(key("rope.scaling.factor"))
    elif stype != "none":
        raise ModelError(f"{path}: rope scaling type {stype!r} not supported by the reference")
    weights = {}
    for name, t in g.tensors.items():
        weights[name] = torch.from_numpy(t.array(np.float64))
    if "rope_freqs.weight" in weights:
        cfg.freq_divisors = weights.pop("rope_freqs.weight").numpy()
        if cfg.freq_divisors.shape != (cfg.rot_dim // 2,):
            raise ModelError(f"{path}: rope_freqs.weight has shape {cfg.freq_divisors.shape}")
    return Model(cfg, weights)


# ---------------------------------------------------------------------------------------------
# Loading from a Hugging Face directory

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": None}


def read_safetensors(path):
    """Parse one .safetensors file: u64 header length, JSON header, raw little-endian data.
    Returns dict name -> float64 numpy array."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack_from("<Q", buf, 0)
    if 8 + n > len(buf):
        raise ModelError(f"{path}: header length {n} runs past end of file")
    header = json.loads(buf[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise ModelError(f"{path}: {name}: dtype {dt} not supported")
        if base + e > len(buf) or b > e:
            raise ModelError(f"{path}: {name}: data offsets out of range")
        raw = np.frombuffer(buf, dtype=np.uint8, count=e - b, offset=base + b)
        if dt == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(_ST_DTYPES[dt])
        count = int(np.prod(shape)) if shape else 1
        if arr.size != count:
            raise ModelError(f"{path}: {name}: {arr.size} elements for shape {shape}")
        out[name] = arr.astype(np.float64).reshape(shape)
    return out


def llama3_freq_divisors(rs, base, rot_dim):
    """Per-frequency divisors for Llama 3 rope scaling from an HF rope_scaling dict:
    wavelengths longer than original_ctx/low_freq_factor are divided by factor, shorter than
    original_ctx/high_freq_factor kept, and the band between interpolated smoothly."""
    factor = float(rs["factor"])
    lo = float(rs.get("low_freq_factor", 1.0))
    hi = float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    i = np.arange(rot_dim // 2, dtype=np.float64)
    inv_freq = base ** (-2.0 * i / rot_dim)
    wavelen = 2.0 * math.pi / inv_freq
    lo_wavelen, hi_wavelen = old_ctx / lo, old_ctx / hi
    new = np.where(wavelen > lo_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - lo) / (hi - lo)
    mid = (wavelen <= lo_wavelen) & (wavelen >= hi_wavelen)
    new = np.where(mid, (1.0 - smooth) * inv_freq / factor + smooth * inv_freq, new)
    return inv_freq / new


_HF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_HF_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_HF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def load_hf(path):
    with open(os.path.join(path, "config.json")) as f:
        hc = json.load(f)
    mt = hc.get("model_type")
    if mt not in _HF_ARCH:
        raise ModelError(f"{path}: unsupported model_type {mt!r}")
    arch = _HF_ARCH[mt]
    n_embd = int(hc["hidden_size"])
    n_head = int(hc["num_attention_heads"])
    head_dim = int(hc.get("head_dim") or n_embd // n_head)
    cfg = Config(
        arch=arch,
        n_vocab=int(hc["vocab_size"]),
        n_embd=n_embd,
        n_layer=int(hc["num_hidden_layers"]),
        n_ff=int(hc["intermediate_size"]),
        n_head=n_head,
        n_head_kv=int(hc.get("num_key_value_heads") or n_head),
        head_dim=head_dim,
        head_dim_v=head_dim,
        rot_dim=head_dim,
        eps=float(hc.get("rms_norm_eps", 1e-6)),
        rope_base=float(hc.get("rope_theta", 10000.0)),
        rope_order="neox",
        n_ctx=int(hc.get("max_position_embeddings", 0)),
    )
    rs = hc.get("rope_scaling")
    if rs:
        rtype = rs.get("rope_type", rs.get("type"))
        if rtype == "llama3":
            cfg.freq_divisors = llama3_freq_divisors(rs, cfg.rope_base, cfg.rot_dim)
        elif rtype == "linear":
            cfg.pos_scale = float(rs["factor"])
        elif rtype != "default":
            raise ModelError(f"{path}: rope_scaling type {rtype!r} not supported")

    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(path, x) for x in files]
    else:
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
        raise ModelError(f"{path}: no .safetensors files")
    hf = {}
    for fn in files:
        hf.update(read_safetensors(fn))

    weights = {}
    for name, arr in hf.items():
        if name in _HF_GLOBAL_NAMES:
            gname = _HF_GLOBAL_NAMES[name]
        elif name.startswith("model.layers."):
            rest = name[len("model.layers.") :]
            L, _, sub = rest.partition(".")
            if sub not in _HF_LAYER_NAMES:
                continue  # e.g. rotary_emb.inv_freq
            gname = f"blk.{int(L)}.{_HF_LAYER_NAMES[sub]}"
        else:
            continue
        weights[gname] = torch.from_numpy(arr)
    if hc.get("tie_word_embeddings", False):
        weights.pop("output.weight", None)
    return Model(cfg, weights)


def load(path):
    """A GGUF file or a Hugging Face directory."""
    if os.path.isdir(path):
        return load_hf(path)
    return load_gguf(path)
