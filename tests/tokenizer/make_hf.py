"""Write a small Hugging Face-style model directory with random weights around a real tokenizer.

usage: /usr/bin/python3 tests/tokenizer/make_hf.py --tokenizer DIR --arch llama|qwen2|qwen3
           -o OUT_DIR [--seed N] [--dtype F32|F16|BF16] [--shards N] [--vocab-size N]
           [--rope-scaling none|linear|llama3] [--tied] [--chat-template FILE]

Owns: config.json, model.safetensors (or model-0000k-of-0000n.safetensors + index; written here:
u64 header length, JSON header, raw little-endian data), and copies of tokenizer.json and
tokenizer_config.json from DIR. The shapes are tiny (a few layers of width 64) so that
`edgellm convert` and the PyTorch reference can be compared in seconds. It does not convert or run
anything.
"""

import argparse
import json
import os
import shutil
import struct

import numpy as np


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        if dtype == "BF16":
            f32 = np.ascontiguousarray(arr, dtype="<f4")
            data = ((f32.view("<u4") + 0x7FFF + ((f32.view("<u4") >> 16) & 1)) >> 16).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(arr, dtype={"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--arch", required=True, choices=["llama", "qwen2", "qwen3"])
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--vocab-size", type=int, default=0)
    ap.add_argument("--rope-scaling", default="none", choices=["none", "linear", "llama3"])
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--chat-template", default=None)
    ap.add_argument("--pre", default=None, choices=["gpt2", "llama3"],
                    help="byte-level tokenizers: replace the pre-tokenizer (and drop the normalizer)")
    a = ap.parse_args()

    with open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    n_tok = max(max(tok["model"]["vocab"].values()), max([t["id"] for t in tok["added_tokens"]] or [0])) + 1
    V = max(a.vocab_size, n_tok)
    C, L, H, HKV = a.n_embd, a.n_layer, 4, 2
    D = 16 if a.arch != "qwen3" else 24  # qwen3: head_dim independent of hidden_size / heads
    FF = 96
    rng = np.random.default_rng(a.seed)

    def w(*shape, std=None):
        std = std if std is not None else 1.0 / np.sqrt(shape[-1])
        return ("F32" if len(shape) == 1 else a.dtype, (rng.standard_normal(shape) * std).astype(np.float32))

    def norm(n):
        return ("F32", (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    t = {"model.embed_tokens.weight": w(V, C, std=1.0), "model.norm.weight": norm(C)}
    if not a.tied:
        t["lm_head.weight"] = w(V, C, std=2.0 / np.sqrt(C))
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = norm(C)
        t[p + "post_attention_layernorm.weight"] = norm(C)
        t[p + "self_attn.q_proj.weight"] = w(H * D, C)
        t[p + "self_attn.k_proj.weight"] = w(HKV * D, C)
        t[p + "self_attn.v_proj.weight"] = w(HKV * D, C)
        t[p + "self_attn.o_proj.weight"] = w(C, H * D)
        t[p + "mlp.gate_proj.weight"] = w(FF, C)
        t[p + "mlp.up_proj.weight"] = w(FF, C)
        t[p + "mlp.down_proj.weight"] = w(C, FF)
        if a.arch == "qwen2":
            for k, n in (("q", H * D), ("k", HKV * D), ("v", HKV * D)):
                t[p + f"self_attn.{k}_proj.bias"] = ("F32", (0.1 * rng.standard_normal(n)).astype(np.float32))
        if a.arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = norm(D)
            t[p + "self_attn.k_norm.weight"] = norm(D)
        t[p + "self_attn.rotary_emb.inv_freq"] = ("F32", np.zeros(D // 2, dtype=np.float32))

    os.makedirs(a.out, exist_ok=True)
    for fn in os.listdir(a.out):
        if fn.endswith(".safetensors") or fn.endswith(".json"):
            os.remove(os.path.join(a.out, fn))
    names = sorted(t)
    if a.shards <= 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    else:
        wm = {}
        for s in range(a.shards):
            fn = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
            part = {n: t[n] for n in names[s :: a.shards]}
            write_safetensors(os.path.join(a.out, fn), part)
            wm.update({n: fn for n in part})
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f)

    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[a.arch]],
        "model_type": a.arch,
        "hidden_size": C,
        "intermediate_size": FF,
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": HKV,
        "head_dim": D,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0 if a.arch == "llama" else 1000000.0,
        "max_position_embeddings": 4096,
        "vocab_size": V,
        "tie_word_embeddings": a.tied,
        "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype],
    }
    if a.rope_scaling == "linear":
        cfg["rope_scaling"] = {"type": "linear", "factor": 4.0}
    elif a.rope_scaling == "llama3":
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    if a.pre:
        # Same vocabulary and merges under another pre-tokenizer: exercises the gpt2 and llama3
        # splitting rules (and llama3's ignore_merges) against the reference with a real vocabulary.
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": a.pre == "gpt2"}
        tok["normalizer"] = None
        if a.pre == "gpt2":
            tok["pre_tokenizer"] = byte_level
        else:
            regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                     "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
            tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}, byte_level]}
        tok["model"]["ignore_merges"] = a.pre == "llama3"
        with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
    else:
        shutil.copyfile(os.path.join(a.tokenizer, "tokenizer.json"), os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.tokenizer, "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    if a.chat_template:
        with open(a.chat_template, encoding="utf-8") as f:
            tc["chat_template"] = f.read()
    with open(os.path.join(a.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
