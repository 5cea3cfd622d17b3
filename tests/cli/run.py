"""Command-line contract of `edgellm`, driven the way a user drives it.

usage: BUILD=build /usr/bin/python3 tests/cli/run.py     (make test-cli)

1. Every subcommand listed by `edgellm --help`: --help exits 0 with a usage text; an unknown option,
   a missing argument and a bad value each exit 2 with exactly one line on stderr (naming the
   command and what is wrong) and nothing on stdout. A table below lists the missing-argument and
   bad-value cases; every subcommand must have at least one of each.
2. logits and info: the JSON contract, out-of-vocabulary ids and missing files exit 1.
3. run: the text printed in prompt mode is the decoded greedy continuation the engine computes
   (`logits --greedy`), token for token: -n N stops after N tokens, an end-of-generation token
   stops earlier, the first token keeps its leading space (it continues the prompt); output is
   streamed (it arrives while the process still runs); the same --seed gives the same text and
   another seed another text; --stop cuts exactly before the first occurrence of the string,
   also across token boundaries. --chat renders the conversation through the model's chat
   template (ChatML with the template's default system message, Phi-3, Llama 2 with a system
   message): the prompt has as many tokens as the expected rendering and the answer is the greedy
   continuation of that rendering; an unknown or missing template warns on stderr and uses ChatML.
4. perplexity: llama.cpp's method (non-overlapping chunks of CTX tokens, first token BOS, the
   second half scored: chunks x (CTX - CTX/2 - 1) tokens), and the value equals an independent
   computation with the PyTorch reference (tools/reference) on the same token ids.

Test models come from $BUILD/genmodel (seeded); models with a chat template are the same files
with tokenizer.chat_template added. Prints one line per check and "N passed, N failed".
"""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
BIN = os.path.join(BUILD_DIR, "edgellm")
GENMODEL = os.path.join(BUILD_DIR, "genmodel")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

import gguf  # noqa: E402  (the reference's GGUF reader: independent of the engine)

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}", flush=True)
    return ok


def edgellm(*args, stdin=None, timeout=120):
    """Runs edgellm; returns (exit code, stdout bytes, stderr text)."""
    p = subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def must(*args, **kw):
    rc, out, err = edgellm(*args, **kw)
    if rc != 0:
        raise RuntimeError(f"edgellm {' '.join(map(str, args))} exited {rc}: {err.strip()[-500:]}")
    return out, err


def genmodel(path, *args):
    subprocess.run([GENMODEL, "--arch", "llama", "--type", "f32", *args, "-o", path], check=True,
                   capture_output=True)
    return path


def token_ids(model, text, *flags):
    return json.loads(must("tokenize", "-m", model, text, "--ids", *flags)[0])


def greedy_ids(model, ids, n):
    """The engine's greedy continuation (argmax after each step) of ids."""
    out, _ = must("logits", "-m", model, "--ids", ",".join(map(str, ids)), "--greedy", str(n))
    return json.loads(out)["greedy"]


# ---------------------------------------------------------------------------------------------
# Decoding, written from the definitions (not from the engine): SentencePiece pieces ("▁" is a
# space, <0xNN> a raw byte, control/unknown/unused tokens print nothing, the leading space of the
# sequence's first piece is dropped), then the byte stream as UTF-8 where each byte that starts no
# valid sequence becomes U+FFFD, and an incomplete sequence at the end one U+FFFD.

TOKEN_NORMAL, TOKEN_BYTE = 1, 6
FFFD = "\ufffd".encode()


class Vocab:
    def __init__(self, model):
        g = gguf.GGUFFile(model)
        self.tokens = g.get("tokenizer.ggml.tokens")
        self.types = g.get("tokenizer.ggml.token_type")
        self.bos = g.get("tokenizer.ggml.bos_token_id")
        self.eos = g.get("tokenizer.ggml.eos_token_id")

    def piece(self, i):
        t = self.types[i]
        if t == TOKEN_BYTE:
            return bytes([int(self.tokens[i][3:5], 16)])
        if t == TOKEN_NORMAL:
            return self.tokens[i].replace("\u2581", " ").encode()
        return b""

    def until_eos(self, ids):
        return ids[: ids.index(self.eos)] if self.eos in ids else ids

    def decode(self, ids, continues):
        """Text of ids; continues=True when they continue earlier text (no space is dropped)."""
        raw = b""
        for i in ids:
            p = self.piece(i)
            if not raw and not continues and p.startswith(b" "):
                p = p[1:]
            raw += p
            continues = continues or bool(p)
        return utf8_repair(raw)


def utf8_len(b, i):
    """Length of the valid UTF-8 sequence at b[i:], 0 if b ends inside one, -1 if none starts."""
    lead = b[i]
    need = 1 if lead < 0x80 else 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else \
        4 if 0xF0 <= lead <= 0xF4 else -1
    if need < 0:
        return -1
    lo = {0xE0: 0xA0, 0xF0: 0x90}.get(lead, 0x80)  # no overlong forms
    hi = {0xED: 0x9F, 0xF4: 0x8F}.get(lead, 0xBF)  # no surrogates, nothing above U+10FFFF
    for k in range(1, need):
        if i + k >= len(b):
            return 0
        if not (lo if k == 1 else 0x80) <= b[i + k] <= (hi if k == 1 else 0xBF):
            return -1
    return need


def utf8_repair(b):
    out, i = b"", 0
    while i < len(b):
        n = utf8_len(b, i)
        if n == 0:
            return out + FFFD
        out += b[i:i + n] if n > 0 else FFFD
        i += max(n, 1)
    return out


# ---------------------------------------------------------------------------------------------
# A copy of a GGUF file with string metadata added (the engine's writer is not reachable from
# here, and genmodel writes no chat template). Tensor offsets are relative to the data section,
# so only the padding before it changes.

def with_metadata(src, dst, extra):
    g = gguf.GGUFFile(src)
    buf = bytes(g.buf)
    c = gguf._Cursor(buf, src)
    c.pos = 24
    for _ in range(len(g.metadata)):
        key = c.string("key")
        c.value(c.u32("type"), key)
    kv_end = c.pos
    infos_end = kv_end + sum(8 + len(t.name.encode()) + 4 + 8 * len(t.ne) + 12
                             for t in g.tensors.values())

    def s(x):
        x = x.encode()
        return struct.pack("<Q", len(x)) + x

    kvs = b"".join(s(k) + struct.pack("<I", gguf.T_STRING) + s(v) for k, v in extra.items())
    head = (buf[:16] + struct.pack("<Q", len(g.metadata) + len(extra)) + buf[24:kv_end] + kvs +
            buf[kv_end:infos_end])
    head += b"\0" * (-len(head) % g.alignment)
    with open(dst, "wb") as f:
        f.write(head + buf[g.data_offset:])
    h = gguf.GGUFFile(dst)
    assert all(h.get(k) == v for k, v in extra.items()) and len(h.tensors) == len(g.tensors)
    return dst


# ---------------------------------------------------------------------------------------------
# 1. Shared behaviour and wrong arguments

def shared_behaviour():
    rc, _, err = edgellm()
    check("no arguments: exit 2 with the usage", rc == 2 and "usage: edgellm" in err, f"rc {rc}")
    rc, _, err = edgellm("frobnicate")
    check("unknown command: exit 2, one line", rc == 2 and err.count("\n") == 1, f"rc {rc}: {err}")
    rc, out, _ = edgellm("--help")
    check("--help: exit 0 with the usage", rc == 0 and b"usage: edgellm" in out)
    text = out.decode()
    cmds = [line.split()[0] for line in text.split("commands:", 1)[-1].splitlines() if line.strip()]
    check("--help lists the subcommands", len(cmds) >= 8, text)
    for c in cmds:
        rc, out, _ = edgellm(c, "--help")
        check(f"{c} --help: exit 0 with a usage text", rc == 0 and b"usage" in out.lower(), f"rc {rc}")
        one_line_usage_error(c, [c, "--no-such-option"], "--no-such-option")
    return cmds


def one_line_usage_error(cmd, args, fragment):
    rc, out, err = edgellm(*args)
    ok = (rc == 2 and err.endswith("\n") and err.count("\n") == 1 and
          err.startswith(f"edgellm {cmd}: ") and fragment in err and not out)
    return check(f"{' '.join(args)[:70]}: exit 2, one line", ok,
                 f"rc {rc}, stdout {out[:80]!r}, stderr {err!r}")


def wrong_arguments(cmds, M, tmp):
    out_gguf = os.path.join(tmp, "out.gguf")
    hf_dir = os.path.join(tmp, "hf")
    os.makedirs(hf_dir, exist_ok=True)
    stops = sum((["--stop", str(i)] for i in range(17)), [])
    # (kind, argv, fragment of the one-line error)
    cases = [
        ("missing", ["info"], "missing MODEL"),
        ("bad", ["info", M, M], "one model file"),
        ("missing", ["logits", "--ids", "1,2"], "-m MODEL and --ids are required"),
        ("missing", ["logits", "-m", M], "-m MODEL and --ids are required"),
        ("missing", ["logits", "-m", M, "--ids"], "'--ids'"),
        ("bad", ["logits", "-m", M, "--ids", "1,x"], "--ids takes a list"),
        ("bad", ["logits", "-m", M, "--ids", ""], "--ids takes a list"),
        ("bad", ["logits", "-m", M, "--ids", "1,,2"], "--ids takes a list"),
        ("bad", ["logits", "-m", M, "--ids", "-1"], "--ids takes a list"),
        ("bad", ["logits", "-m", M, "--ids", "1", "--exit", "x"], "--exit"),
        ("bad", ["logits", "-m", M, "--ids", "1,2", "--exit", "3"], "layers 0..2"),
        ("bad", ["logits", "-m", M, "--ids", "1", "--greedy", "-1"], "--greedy"),
        ("bad", ["logits", "-m", M, "--ids", "1", "--batch", "0"], "--batch"),
        ("bad", ["logits", "-m", M, "--ids", "1", "-t", "0"], "-t"),
        ("missing", ["compress", "-m", M], "-m IN.gguf and -o OUT.gguf are required"),
        ("missing", ["compress", "-m", M, "-o", out_gguf], "give one of"),
        ("missing", ["compress", "-m", M, "-o"], "'-o'"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--target-bpw", "0.5"], "--target-bpw"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--target-bpw", "four"], "--target-bpw"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--target-size", "12Q"], "--target-size"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--uniform", "q9"], "q9"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--target-bpw", "4", "--uniform", "q4_0"],
         "give one of"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--uniform", "q4_0", "--sparsity", "x"],
         "--sparsity"),
        ("bad", ["compress", "-m", M, "-o", out_gguf, "--uniform", "q4_0", "--chunk", "0"],
         "--chunk"),
        ("missing", ["bench"], "-m MODEL is required"),
        ("missing", ["bench", "-m"], "'-m'"),
        ("bad", ["bench", "-m", M, "-t", "0"], "thread counts"),
        ("bad", ["bench", "-m", M, "-t", "1,x"], "-t takes a list"),
        ("bad", ["bench", "-m", M, "-p", "abc"], "-p takes a token count"),
        ("bad", ["bench", "-m", M, "-n", "-1"], "-n takes a token count"),
        ("bad", ["bench", "-m", M, "-r", "0"], "-r takes a repetition count"),
        ("bad", ["bench", "-m", M, "-p", "0", "-n", "0"], "both 0"),
        ("missing", ["convert"], "HF_DIR and OUT.gguf are required"),
        ("missing", ["convert", hf_dir], "HF_DIR and OUT.gguf are required"),
        ("missing", ["convert", hf_dir, out_gguf, "--type"], "'--type'"),
        ("bad", ["convert", hf_dir, out_gguf, "--type", "q9"], "--type must be f16, bf16 or f32"),
        ("bad", ["convert", hf_dir, out_gguf, "extra"], "unexpected argument 'extra'"),
        ("bad", ["convert", M, out_gguf], "is not a directory"),
        ("missing", ["run", "-m", M], "give either -p PROMPT or --chat"),
        ("missing", ["run", "-m", M, "-p"], "'-p'"),
        ("bad", ["run", "-m", M, "-p", "a", "--chat"], "give either -p PROMPT or --chat"),
        ("bad", ["run", "-m", M, "-p", "a", "-n", "abc"], "-n takes a token count"),
        ("bad", ["run", "-m", M, "-p", "a", "-n", "-1"], "-n takes a token count"),
        ("bad", ["run", "-m", M, "-p", "a", "--temp", "hot"], "--temp"),
        ("bad", ["run", "-m", M, "-p", "a", "--temp", "-1"], "--temp"),
        ("bad", ["run", "-m", M, "-p", "a", "--top-k", "-1"], "--top-k"),
        ("bad", ["run", "-m", M, "-p", "a", "--top-p", "0"], "--top-p"),
        ("bad", ["run", "-m", M, "-p", "a", "--top-p", "1.5"], "--top-p"),
        ("bad", ["run", "-m", M, "-p", "a", "--min-p", "2"], "--min-p"),
        ("bad", ["run", "-m", M, "-p", "a", "--repeat-penalty", "0"], "--repeat-penalty"),
        ("bad", ["run", "-m", M, "-p", "a", "--seed", "-5"], "--seed"),
        ("bad", ["run", "-m", M, "-p", "a", "--seed", "abc"], "--seed"),
        ("bad", ["run", "-m", M, "-p", "a", "-c", "x"], "-c takes a context size"),
        ("bad", ["run", "-m", M, "-p", "a", "-c", "4"], "-c takes a context size"),
        ("bad", ["run", "-m", M, "-p", "a", "-t", "0"], "-t takes a thread count"),
        ("bad", ["run", "-m", M, "-p", "a", *stops], "at most 16 --stop"),
        ("missing", ["perplexity", "-m", M], "-f TEXT is required"),
        ("missing", ["perplexity", "-m", M, "-f"], "'-f'"),
        ("bad", ["perplexity", "-m", M, "-f", M, "-c", "x"], "-c takes a context size"),
        ("bad", ["perplexity", "-m", M, "-f", M, "-c", "2"], "-c takes a context size"),
        ("bad", ["perplexity", "-m", M, "-f", M, "-b", "0"], "-b takes a positive batch"),
        ("bad", ["perplexity", "-m", M, "-f", M, "--chunks", "0"], "--chunks"),
        ("bad", ["perplexity", "-m", M, "-f", M, "-t", "0"], "-t takes a thread count"),
        ("missing", ["tokenize", "-m", M], "TEXT (or --jsonl FILE) is required"),
        ("missing", ["tokenize", "-m", M, "--jsonl"], "'--jsonl'"),
        ("bad", ["tokenize", "-m", M, "a", "--jsonl", M], "not both"),
        ("bad", ["tokenize", "-m", M, "a", "b"], "more than one TEXT"),
    ]
    for kind, args, fragment in cases:
        one_line_usage_error(args[0], args, fragment)
    for c in cmds:
        kinds = {k for k, a, _ in cases if a[0] == c}
        check(f"{c}: missing-argument and bad-value cases listed", kinds == {"missing", "bad"},
              f"only {sorted(kinds)}")


def logits_and_info(M, tmp):
    rc, _, err = edgellm("logits", "-m", M, "--ids", "1,999")
    check("logits: a token outside the vocabulary exits 1", rc == 1 and "outside the vocabulary" in err,
          f"rc {rc}: {err}")
    missing = os.path.join(tmp, "missing.gguf")
    rc, _, err = edgellm("logits", "-m", missing, "--ids", "1")
    check("logits: a missing model exits 1 naming it", rc == 1 and f"{missing}: cannot open" in err,
          f"rc {rc}: {err}")
    o = json.loads(must("logits", "-m", M, "--ids", "1,2,3", "--all", "--greedy", "4")[0])
    best = max(range(320), key=lambda i: o["logits"][2][i])
    check("logits: the JSON contract",
          o["n_vocab"] == 320 and o["n_layer"] == 3 and o["exit"] == 2 and
          o["positions"] == [0, 1, 2] and len(o["logits"]) == 3 and
          all(len(r) == 320 for r in o["logits"]) and len(o["greedy"]) == 4 and
          o["greedy"][0] == best, str({k: o[k] for k in ("n_vocab", "n_layer", "exit", "positions")}))
    out = must("info", M)[0].decode()
    check("info: architecture summary and bits per weight",
          "architecture: llama" in out and "bits per weight" in out, out[-300:])


# ---------------------------------------------------------------------------------------------
# 3. run

def run_prompt(M, vocab):
    prompt = "a"  # its greedy continuation starts with a "▁x" piece and reaches EOS at token 18
    ids = token_ids(M, prompt)
    greedy = greedy_ids(M, ids, 24)
    check("run: precondition: the greedy continuation starts with a space and has EOS after 16",
          vocab.piece(greedy[0]).startswith(b" ") and vocab.eos not in greedy[:16] and
          vocab.eos in greedy, str(greedy))
    for n in (1, 5, 16, 24):
        toks = vocab.until_eos(greedy[:n])
        n_gen = min(n, len(toks) + 1)  # an end-of-generation token counts, but prints nothing
        want = vocab.decode(toks, continues=True) + b"\n"
        out, err = must("run", "-m", M, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "1")
        check(f"run -n {n} --temp 0: prints the greedy continuation, {n_gen} tokens generated",
              out == want and f"generated {n_gen} tokens" in err,
              f"got {out!r}, expected {want!r}; {err.strip()}")
    return vocab.decode(vocab.until_eos(greedy[:16]), continues=True)


def run_streams(tmp, vocab):
    """Reads the first bytes of a 4000-token greedy run (about 5 s; its continuation has no EOS)."""
    big = genmodel(os.path.join(tmp, "ctx4k.gguf"), "--seed", "9", "--ctx", "4096")
    prompt = "once upon a time"
    start = vocab.decode(greedy_ids(big, token_ids(big, prompt), 16), continues=True)
    p = subprocess.Popen([BIN, "run", "-m", big, "-p", prompt, "-n", "4000", "-c", "4096", "--temp",
                          "0", "-t", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = os.read(p.stdout.fileno(), 65536)
    alive = p.poll() is None
    p.kill()
    p.wait()
    p.stdout.close()
    # Fully buffered output would arrive in blocks of 4096 bytes, or at exit.
    check("run: text is streamed while generating (first bytes arrive before exit)",
          first and alive and len(first) < 4096 and
          (start.startswith(first) or first.startswith(start)),
          f"{len(first)} bytes ({first[:40]!r}, expected the start of {start!r}), alive: {alive}")


def run_seeds(M):
    def sample(seed):
        return must("run", "-m", M, "-p", "the old man", "-n", "24", "--temp", "1", "--seed",
                    str(seed), "-t", "1")[0]
    a, b, c = sample(7), sample(7), sample(8)
    check("run: the same --seed gives the same text", a == b and len(a) > 1, f"{a!r} vs {b!r}")
    check("run: another --seed gives other text", a != c, f"both {a!r}")


def run_stop(M, full):
    def stopped(stop):
        return must("run", "-m", M, "-p", "a", "-n", "16", "--temp", "0", "-t", "1", "--stop", stop)[0]
    # a stop string of at least 3 characters (so it spans tokens) from the middle of the text,
    # first occurring at k, valid UTF-8 without NUL (it goes through argv)
    def usable(seg):
        try:
            return len(seg.decode()) >= 3 and b"\0" not in seg
        except UnicodeDecodeError:
            return False
    k, stop = next((k, full[k:k + n]) for k in range(2, len(full)) for n in range(3, 8)
                   if usable(full[k:k + n]) and full.find(full[k:k + n]) == k)
    want = full[:k] + b"\n"
    out = stopped(stop.decode())
    check(f"run --stop {stop.decode()!r}: output cut exactly before it", out == want,
          f"got {out!r}, expected {want!r}")
    out = stopped("no such text")
    check("run --stop (never occurs): the whole output", out == full + b"\n", f"{out!r}")
    if all(0x20 <= ch < 0x7f for ch in full[:2]):
        out = stopped(full[:2].decode())
        check(f"run --stop {full[:2].decode()!r} (the first characters): nothing printed",
              out == b"\n", f"{out!r}")


# Templates as they appear in tokenizer_config.json files (shortened where the detection and
# rendering do not depend on the rest).
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
UNKNOWN_TEMPLATE = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def run_chat(M, vocab, tmp):
    user = "hello there"
    cases = [
        ("ChatML (Qwen2, default system message)", QWEN2_TEMPLATE, [],
         "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
         f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n", None),
        ("Phi-3 with --system", PHI3_TEMPLATE, ["--system", "Be brief."],
         f"<|system|>\nBe brief.<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n", None),
        ("Llama 2 with --system", LLAMA2_TEMPLATE, ["--system", "Be brief."],
         f"<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n{user} [/INST]", None),
        ("unknown template", UNKNOWN_TEMPLATE, [],
         f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
         "warning: the model's chat template is not one edgellm knows; using ChatML"),
        ("no template", None, [],
         f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
         "warning: the model's chat template is missing; using ChatML"),
    ]
    for i, (name, tmpl, opts, rendered, warning) in enumerate(cases):
        model = M if tmpl is None else with_metadata(
            M, os.path.join(tmp, f"chat{i}.gguf"), {"tokenizer.chat_template": tmpl})
        # what eng_tokenize_chat documents: special tokens parsed, BOS unless the text starts with it
        ids = token_ids(model, rendered, "--no-bos")
        if not rendered.startswith(vocab.tokens[vocab.bos]):
            ids = [vocab.bos] + ids
        want = vocab.decode(vocab.until_eos(greedy_ids(model, ids, 12)), continues=False) + b"\n"
        out, err = must("run", "-m", model, "--chat", "--temp", "0", "-n", "12", "-t", "1", *opts,
                        stdin=(user + "\n").encode())
        warned = [line for line in err.splitlines() if "warning" in line]
        check(f"run --chat, {name}: rendered through the template",
              f"prompt {len(ids)} tokens" in err and out == want,
              f"expected {len(ids)} prompt tokens and {want!r}; got {out!r}, {err.strip()!r}")
        check(f"run --chat, {name}: " + ("warns once on stderr" if warning else "no warning"),
              warned == ([f"edgellm run: {warning}"] if warning else []), f"{warned}")


def run_chat_streams(M):
    """An answer is printed before the next line of input is read."""
    p = subprocess.Popen([BIN, "run", "-m", M, "--chat", "--temp", "0", "-n", "8", "-t", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(b"hello\n")
    p.stdin.flush()
    got = b""
    while not got.endswith(b"\n"):
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        got += chunk
    waiting = p.poll() is None
    p.stdin.close()
    rest = p.stdout.read()
    rc = p.wait()
    check("run --chat: each answer arrives while the next input line is awaited",
          got.endswith(b"\n") and waiting and rest == b"" and rc == 0,
          f"got {got!r}, waiting {waiting}, then {rest!r}, rc {rc}")


# ---------------------------------------------------------------------------------------------
# 4. perplexity

PPL_TEXT = (
    "The old man was there before the rest of them came back from the river. He had made a fire "
    "and sat by it with his hands over the flames, and when they asked him what he had seen he "
    "said only that the water was high this year, higher than he had known it since he was a boy. "
    "They ate in silence. Later, one of the young men went down to look and came back saying the "
    "bridge was gone, and the old man nodded as if he had known that too. In the morning they "
    "walked along the bank until they found a place where the river ran wide and shallow over "
    "stones, and there they crossed, one at a time, holding the packs above their heads.\n")
PPL_CTX = 64
# Tolerance. A token's negative log-likelihood is logsumexp(z) - z[target], so a logit error of e
# moves it, and log PPL, by at most 2e; relative PPL error is then at most 2e as well. On f32
# models the engine's logits are within 2.3e-5 of the float64 reference (measured by
# tests/reference, whose enforced bound 1e-3 would allow 2e-3 here), giving 4.6e-5; the bound is
# 2e-4, 4x that, plus 1e-4 absolute for the four decimals PPL is printed with. It has to be this
# tight: on this model, scoring one position more or fewer per chunk moves PPL by 1.1% and 0.45%,
# and not putting BOS first by 5.9% (computed with the reference).
PPL_REL_TOL = 2e-4


def perplexity(tmp):
    M = genmodel(os.path.join(tmp, "ppl.gguf"), "--seed", "11")
    text_file = os.path.join(tmp, "text.txt")
    with open(text_file, "w") as f:
        f.write(PPL_TEXT)
    toks = token_ids(M, PPL_TEXT, "--no-special")  # BOS first, as perplexity tokenizes
    n_chunk = len(toks) // PPL_CTX
    n_scored = n_chunk * (PPL_CTX - PPL_CTX // 2 - 1)

    def ppl_run(*extra):
        out, err = must("perplexity", "-m", M, "-f", text_file, "-c", str(PPL_CTX), "-t", "1", *extra)
        lines = out.decode().strip().splitlines()
        last = lines[-1]
        value = float(last[len("PPL = "):]) if last.startswith("PPL = ") else float("nan")
        scored = next((int(x.split()[1]) for x in lines if x.startswith("scored ")), -1)
        chunks = sum(1 for x in lines if x.startswith("["))
        return value, scored, chunks, last

    value, scored, chunks, last = ppl_run()
    check(f"perplexity: last line 'PPL = <value>' ({last})", last.startswith("PPL = ") and
          math.isfinite(value) and value > 1, last)
    check(f"perplexity: {n_chunk} chunks of {PPL_CTX}, {n_scored} tokens scored",
          scored == n_scored and chunks == n_chunk and n_chunk >= 3,
          f"{chunks} chunks, {scored} scored, {len(toks)} tokens")

    import torch  # noqa: E402  (only here: it takes a while to import)
    import model as refmodel  # noqa: E402

    ref = refmodel.load(M)
    nll, count = 0.0, 0
    bos = gguf.GGUFFile(M).get("tokenizer.ggml.bos_token_id")
    for ch in range(n_chunk):
        seq = toks[ch * PPL_CTX:(ch + 1) * PPL_CTX]
        seq[0] = bos
        lg = ref.logits(seq)
        for p in range(PPL_CTX // 2, PPL_CTX - 1):
            nll += float(torch.logsumexp(lg[p], 0) - lg[p][seq[p + 1]])
            count += 1
    want = math.exp(nll / count)
    rel = abs(value - want) / want
    check(f"perplexity equals the PyTorch reference (engine {value:.4f}, reference {want:.4f}, "
          f"rel {rel:.1e}, tolerance {PPL_REL_TOL:g})",
          count == n_scored and abs(value - want) <= PPL_REL_TOL * want + 1e-4)

    v8, s8, _, _ = ppl_run("-b", "8")
    check(f"perplexity -b 8 (several batches per chunk) gives the same value ({v8:.4f})",
          s8 == n_scored and abs(v8 - value) <= 1e-4 * value + 1e-4)
    v2, s2, c2, _ = ppl_run("--chunks", "2")
    check("perplexity --chunks 2 scores two chunks", c2 == 2 and s2 == 2 * (PPL_CTX - PPL_CTX // 2 - 1),
          f"{c2} chunks, {s2} scored")
    rc, _, err = edgellm("perplexity", "-m", M, "-f", text_file, "-c", str(len(toks) + 1))
    check("perplexity: a text shorter than one chunk exits 1 with one line",
          rc == 1 and err.count("\n") == 1 and "fewer than one chunk" in err, f"rc {rc}: {err}")


def bench_json(M):
    """edgellm bench --json: one element per (model, thread count, test) with the keys
    llama-bench users expect, medians between min and max, sizes and RSS that make sense."""
    out = must("bench", "-m", M, "-t", "1,2", "-p", "8", "-n", "4", "-r", "2", "--json")[0]
    rows = json.loads(out)
    keys = {"model", "test", "n_tokens", "threads", "tok_per_s", "tok_per_s_min",
            "tok_per_s_max", "size_bytes", "bpw", "rss_peak_bytes"}
    size = os.path.getsize(M)
    ok = (isinstance(rows, list) and len(rows) == 4 and
          sorted((r["threads"], r["test"]) for r in rows) ==
          [(1, "pp"), (1, "tg"), (2, "pp"), (2, "tg")] and
          all(keys <= set(r) for r in rows) and
          all(r["n_tokens"] == (8 if r["test"] == "pp" else 4) for r in rows) and
          all(0 < r["tok_per_s_min"] <= r["tok_per_s"] <= r["tok_per_s_max"] for r in rows) and
          all(r["size_bytes"] <= size and r["size_bytes"] > size // 2 for r in rows) and
          all(0 < r["bpw"] < 33 and r["rss_peak_bytes"] > 0 for r in rows) and
          all(r["model"] == M for r in rows))
    check("bench --json: one row per thread count and test with the documented keys", ok,
          out[:300].decode() if isinstance(out, bytes) else str(out)[:300])


def main():
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edgellm-cli-") as tmp:
        try:
            M = genmodel(os.path.join(tmp, "m.gguf"), "--seed", "9")
            vocab = Vocab(M)
            cmds = shared_behaviour()
            wrong_arguments(cmds, M, tmp)
            logits_and_info(M, tmp)
            bench_json(M)
            full = run_prompt(M, vocab)
            run_streams(tmp, vocab)
            run_seeds(M)
            run_stop(M, full)
            run_chat(M, vocab, tmp)
            run_chat_streams(M)
            perplexity(tmp)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            check("cli test run", False, str(e))
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed ({time.time() - t0:.1f} s)")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
