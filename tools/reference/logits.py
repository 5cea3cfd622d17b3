"""Print reference logits as JSON: the same shape `build/edgellm logits` prints.

usage: /usr/bin/python3 tools/reference/logits.py -m MODEL(.gguf | HF_DIR) --ids 1,2,3
           [--all] [--exit L] [--greedy N]

Output (one JSON object):
  {"n_vocab": V, "n_layer": L, "exit": E, "positions": [...], "logits": [[V floats], ...],
   "greedy": [N ids]}
positions: every position with --all, else only the last. exit: the layer whose hidden state went
through the final norm and output head (default n_layer-1). greedy (only with --greedy N): N ids
chosen by argmax after the given ids, always from the last layer.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from model import load  # noqa: E402


def parse_ids(s):
    try:
        return [int(x) for x in s.split(",") if x.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --ids {s!r}: expected comma-separated integers")


def run(model, ids, all_positions=False, exit_layer=None, greedy=0):
    """The JSON object logits.py prints, as a dict."""
    n_layer = model.cfg.n_layer
    E = n_layer - 1 if exit_layer is None else exit_layer
    lg = model.logits(ids, E)
    positions = list(range(len(ids))) if all_positions else [len(ids) - 1]
    out = {
        "n_vocab": model.cfg.n_vocab,
        "n_layer": n_layer,
        "exit": E,
        "positions": positions,
        "logits": [lg[p].tolist() for p in positions],
    }
    if greedy:
        out["greedy"] = model.greedy(ids, greedy)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True, help="GGUF file or Hugging Face directory")
    ap.add_argument("--ids", required=True, type=parse_ids, help="comma-separated token ids")
    ap.add_argument("--all", action="store_true", help="logits for every position")
    ap.add_argument("--exit", type=int, default=None, help="exit layer (0-based)")
    ap.add_argument("--greedy", type=int, default=0, help="also generate N tokens greedily")
    a = ap.parse_args()
    if not a.ids:
        ap.error("--ids is empty")
    try:
        model = load(a.model)
        out = run(model, a.ids, a.all, a.exit, a.greedy)
    except Exception as e:  # any load or range error: one clear line, exit 1
        print(f"logits.py: {a.model}: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
