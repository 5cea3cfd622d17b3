"""Write the trained model as a Hugging Face-style Llama directory.

Owns: config.json, generation_config.json, model.safetensors (written here: 8-byte little-endian
header length, JSON header, raw little-endian tensors), tokenizer.json (the Llama-2 fast-tokenizer
layout: BPE with vocab + merges derived from the SentencePiece model, byte fallback, Prepend/Replace
normalizer, ByteFallback/Fuse/Strip decoder), tokenizer_config.json with the ChatML template, and a
copy of tokenizer.model. It does not write GGUF: `edgellm convert` turns this directory into one.

Usage: export_hf.py RUN_DIR TOKENIZER.model OUT_DIR
"""

import json
import os
import shutil
import struct
import sys

import sentencepiece as spm
import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors):
    """tensors: dict name → contiguous CPU tensor. Names are written in sorted order."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes() if t.dtype != torch.bfloat16 else \
            t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)  # keep the tensor data 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def added_token(i, content, special=True):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def tokenizer_files(sp_model_path):
    """Returns (tokenizer.json dict, tokenizer_config.json dict, ids of the ChatML tokens)."""
    sp = spm.SentencePieceProcessor(model_file=sp_model_path)
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    user_defined = {"<|im_start|>", "<|im_end|>"}

    def kind(i):
        if sp.is_unknown(i):
            return "unknown"
        if sp.is_control(i):
            return "control"
        if sp.is_byte(i):
            return "byte"
        if sp.is_unused(i):
            return "unused"
        return "user_defined" if pieces[i] in user_defined else "normal"

    kinds = [kind(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    # Merges the way the Llama converter derives them: every split of a vocabulary piece into two
    # vocabulary pieces, ordered by the merged piece's score (best first), ties by the ids of
    # the left then right piece. Only normal pieces take part: control tokens, byte tokens and
    # the user-defined ChatML tokens are never formed by merging.
    normal = {p for p, k in zip(pieces, kinds) if k == "normal"}
    merges = []
    for i, p in enumerate(pieces):
        if kinds[i] != "normal" or len(p) < 2:
            continue
        local = []
        for k in range(1, len(p)):
            l, r = p[:k], p[k:]
            if l in normal and r in normal:
                local.append((vocab[l], vocab[r], l, r))
        local.sort()
        merges.extend((-scores[i], i, a, b, l, r) for a, b, l, r in local)
    merges.sort()
    merges = ["%s %s" % (m[4], m[5]) for m in merges]

    added = []
    chatml = {}
    for i, p in enumerate(pieces):
        if kinds[i] in ("unknown", "control"):
            added.append(added_token(i, p))
        elif kinds[i] == "user_defined":
            added.append(added_token(i, p))
            chatml[p] = i
    assert [a["content"] for a in added[:3]] == ["<unk>", "<s>", "</s>"]
    assert set(chatml) == {"<|im_start|>", "<|im_end|>"}

    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab,
                  "merges": merges},
    }
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 512,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "use_default_system_prompt": False,
    }
    return tok, cfg, chatml


def main():
    run_dir, sp_model, out = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    mcfg = json.load(open(os.path.join(run_dir, "config.json")))
    state = torch.load(os.path.join(run_dir, "model.pt"), map_location="cpu")
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    assert sp.get_piece_size() == mcfg["vocab_size"]

    tok, tcfg, chatml = tokenizer_files(sp_model)
    im_end = chatml["<|im_end|>"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": mcfg["hidden_size"],
        "intermediate_size": mcfg["intermediate_size"],
        "num_hidden_layers": mcfg["num_hidden_layers"],
        "num_attention_heads": mcfg["num_attention_heads"],
        "num_key_value_heads": mcfg["num_key_value_heads"],
        "head_dim": mcfg["hidden_size"] // mcfg["num_attention_heads"],
        "hidden_act": "silu",
        "rms_norm_eps": mcfg["rms_norm_eps"],
        "rope_theta": mcfg["rope_theta"],
        "rope_scaling": None,
        "max_position_embeddings": mcfg["max_position_embeddings"],
        "vocab_size": mcfg["vocab_size"],
        "tie_word_embeddings": mcfg["tie_word_embeddings"],
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    gen = {"bos_token_id": 1, "eos_token_id": [2, im_end], "do_sample": True,
           "temperature": 0.7, "top_p": 0.9}

    tensors = {}
    for name, t in state.items():
        if name.startswith("rope_"):
            continue
        hf = name if name.startswith("lm_head") else "model." + name
        tensors[hf] = t.detach().to(torch.float32)
    if not mcfg["tie_word_embeddings"]:
        assert "lm_head.weight" in tensors
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)

    def dump(name, obj):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=2)
            f.write("\n")

    dump("config.json", config)
    dump("generation_config.json", gen)
    dump("tokenizer.json", tok)
    dump("tokenizer_config.json", tcfg)
    dump("special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                     "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    shutil.copyfile(sp_model, os.path.join(out, "tokenizer.model"))
    n = sum(t.numel() for t in tensors.values())
    print("export_hf: %d tensors, %d parameters → %s" % (len(tensors), n, out))


if __name__ == "__main__":
    main()
