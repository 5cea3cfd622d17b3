"""Writes the measured results of the default model into models/README.md: the training summary
(from the training log), the held-out perplexity measured with `edgellm perplexity`, and greedy
sample outputs from `edgellm run`. Each result lives between `<!-- begin:NAME -->` and
`<!-- end:NAME -->` (or replaces the placeholder RESULTS-NAME on the first run), so a rerun
replaces it. The perplexity line `<!-- ppl: VALUE ctx: CTX -->` is what tests/default_model.py
checks the model against.

usage: /usr/bin/python3 tools/train/report.py RUN_DIR     (run from the repository root)
"""

import json
import os
import re
import subprocess
import sys

CTX = 512
PROMPTS = [
    "In the beginning God created",
    "And the LORD spake unto Moses, saying,",
    "Blessed are the",
    "CYNIC, n.",
    "The kingdom of heaven is like",
]
CHATS = ["Recite John 3:16.", "What does the Devil's Dictionary say about love?",
         "Who are you?"]


def cli(*args, stdin=None):
    build = os.environ.get("BUILD", "build")
    return subprocess.run([os.path.join(build, "edgellm")] + list(args), check=True, text=True,
                          capture_output=True, input=stdin).stdout


def put(text, name, body):
    block = "<!-- begin:%s -->\n%s\n<!-- end:%s -->" % (name, body.rstrip("\n"), name)
    pat = re.compile(r"<!-- begin:%s -->.*?<!-- end:%s -->" % (name, name), re.S)
    if pat.search(text):
        return pat.sub(lambda m: block, text)
    return text.replace("RESULTS-" + name.upper(), block)


def training(run_dir):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "train_log.jsonl"))]
    evals = [r for r in rows if r.get("heldout_loss") is not None]
    last = evals[-1]
    lines = ["| step | tokens | elapsed | train loss | held-out text loss | held-out chat loss |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in evals:
        tl = "-" if r.get("train_loss") is None else "%.3f" % r["train_loss"]
        lines.append("| %d | %s | %.0f min | %s | %.3f | %.3f |" % (
            r["step"], "{:,}".format(r["tokens"]), r["elapsed_s"] / 60, tl, r["heldout_loss"],
            r["heldout_chat_loss"]))
    lines.append("")
    lines.append("Final held-out loss %.3f nats per token on text (perplexity %.1f in PyTorch, "
                 "random windows) and %.3f on conversations, after %.0f minutes of training "
                 "(`%s/train_log.jsonl`)." % (last["heldout_loss"], 2.718281828 ** last["heldout_loss"],
                                               last["heldout_chat_loss"], last["elapsed_s"] / 60,
                                               run_dir))
    return "\n".join(lines)


def perplexity():
    out = cli("perplexity", "-m", "models/default.gguf", "-f", "models/heldout.txt", "-c", str(CTX))
    ppl = float(out.strip().splitlines()[-1].split("=")[1])
    return ppl, ("```\nbuild/edgellm perplexity -m models/default.gguf -f models/heldout.txt -c %d\n"
                 "PPL = %.4f\n```\n\n<!-- ppl: %.4f ctx: %d -->\n"
                 "`make test` (tests/default_model.py) measures it again and requires the same "
                 "value within 2%%." % (CTX, ppl, ppl, CTX))


def samples():
    out = ["Greedy (`build/edgellm run -p PROMPT -n 64 --temp 0`), the prompt in bold:", ""]
    for p in PROMPTS:
        text = cli("run", "-m", "models/default.gguf", "-p", p, "-n", "64", "--temp", "0")
        out.append("- **%s**%s" % (p, text.rstrip().replace("\n", " ⏎ ")))
    out += ["", "Chat (`build/edgellm run --chat --temp 0`, one question per line):", ""]
    for q in CHATS:
        text = cli("run", "-m", "models/default.gguf", "--chat", "-n", "96", "--temp", "0",
                   stdin=q + "\n")
        out.append("- *%s* → %s" % (q, " ".join(text.split())))
    return "\n".join(out)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    readme = "models/README.md"
    text = open(readme, encoding="utf-8").read()
    text = put(text, "training", training(sys.argv[1]))
    ppl, body = perplexity()
    text = put(text, "perplexity", body)
    text = put(text, "samples", samples())
    open(readme, "w", encoding="utf-8").write(text)
    print("models/README.md: held-out perplexity %.4f (ctx %d)" % (ppl, CTX))


if __name__ == "__main__":
    main()
