"""`make test-default-model`: the bundled models/default.gguf is what models/README.md says.

- Its held-out perplexity, measured now with `edgellm perplexity` on models/heldout.txt, is within
  2% of the value recorded in models/README.md (the line `<!-- ppl: VALUE ctx: CTX -->`).
- Greedy generation from five fixed prompts is not a short loop: nowhere do tokens repeat with a
  period of 20 or less for 40 tokens (so no 20-token window is followed by the same 20 tokens),
  and each continuation has at least 20 tokens before an end-of-text token.
- `edgellm run` with no -m uses it (run from the repository root and from another directory).

usage: /usr/bin/python3 tests/default_model.py      (BUILD selects the build directory)
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
CLI = os.path.join(BUILD, "edgellm")
MODEL = os.path.join(ROOT, "models", "default.gguf")
README = os.path.join(ROOT, "models", "README.md")
HELDOUT = os.path.join(ROOT, "models", "heldout.txt")

PROMPTS = [
    "In the beginning God created",
    "And the LORD spake unto Moses, saying,",
    "Blessed are the",
    "CYNIC, n.",
    "The kingdom of heaven is like",
]
N_GEN = 96
WINDOW = 20

failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1


def run(args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def recorded_ppl():
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- ppl: ([0-9.]+) ctx: ([0-9]+) -->", text)
    if not m:
        sys.exit("models/README.md has no '<!-- ppl: VALUE ctx: CTX -->' line")
    return float(m.group(1)), int(m.group(2))


def short_loop(ids):
    """Where the text falls into a short loop, or -1: the first i such that some period p <= 20
    repeats for 2·WINDOW tokens (ids[j] == ids[j + p] for j in i .. i + 2·WINDOW - p). This
    contains the literal rule (a 20-token window followed by the same 20 tokens) and also catches
    loops whose period does not divide 20 ("nor the children of Israel, nor the children ...")."""
    for p in range(1, WINDOW + 1):
        run = 0
        for j in range(len(ids) - p):
            run = run + 1 if ids[j] == ids[j + p] else 0
            if run >= 2 * WINDOW - p:
                return j - run + 1
    return -1


def main():
    if not os.path.exists(MODEL):
        sys.exit("models/default.gguf is missing: build it with `make default-model`")
    want, ctx = recorded_ppl()
    out = run([CLI, "perplexity", "-m", MODEL, "-f", HELDOUT, "-c", str(ctx)])
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"PPL = ([0-9.]+)", last)
    check(m is not None, "perplexity prints 'PPL = <value>' last: %r" % last)
    if m:
        got = float(m.group(1))
        check(abs(got - want) <= 0.02 * want,
              "held-out perplexity %.4f within 2%% of the recorded %.4f (ctx %d)" % (got, want, ctx))

    info = run([CLI, "info", MODEL])
    eos = None
    for line in info.splitlines():
        mm = re.search(r"tokenizer\.ggml\.eos_token_id\s+\S+\s+(\d+)", line)
        if mm:
            eos = int(mm.group(1))
    check(eos is not None, "the model names its end-of-text token (%s)" % eos)
    for p in PROMPTS:
        ids = json.loads(run([CLI, "tokenize", "-m", MODEL, p, "--ids"]))
        res = json.loads(run([CLI, "logits", "-m", MODEL, "--ids", ",".join(map(str, ids)),
                              "--greedy", str(N_GEN), "--summary"]))
        gen = res["greedy"]
        if eos is not None and eos in gen:
            gen = gen[:gen.index(eos)]
        at = short_loop(gen)
        check(len(gen) >= WINDOW and at < 0,
              "greedy after %r: %d tokens before end of text, %s" %
              (p, len(gen), "no short loop" if at < 0 else "a loop of <= 20 tokens from token %d"
               % at))

    # no -m: the bundled model, from the repository root and from elsewhere
    for cwd in (ROOT, tempfile.gettempdir()):
        r = subprocess.run([CLI, "run", "-p", "Blessed are the", "-n", "8", "--temp", "0"],
                           cwd=cwd, text=True, capture_output=True)
        check(r.returncode == 0 and r.stdout.strip() != "",
              "edgellm run without -m (cwd %s) uses the bundled model: %r" %
              (cwd, (r.stdout or r.stderr).strip()[:80]))
    print("default model: %s" % ("all passed" if failures == 0 else "%d failed" % failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
