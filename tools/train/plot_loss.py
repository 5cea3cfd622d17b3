"""Plot the training log (train.py's train_log.jsonl) as a PNG loss curve.

Usage: plot_loss.py train_log.jsonl OUT.png
Uses Debian's python3-matplotlib (Agg backend; no display needed).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    tok = [r["tokens"] / 1e6 for r in recs]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    tr = [(t, r["train_loss"]) for t, r in zip(tok, recs) if r["train_loss"] is not None]
    ax.plot([t for t, _ in tr], [l for _, l in tr], "o-", ms=3,
            label="train (mean over the preceding steps)")
    ax.plot(tok, [r["heldout_loss"] for r in recs], "s-", ms=3, label="held-out text")
    ax.plot(tok, [r["heldout_chat_loss"] for r in recs], "^-", ms=3,
            label="held-out chat (ChatML)")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_ylim(0, max(6.0, min(9.0, max(r["heldout_loss"] for r in recs))))
    ax.grid(alpha=0.3)
    last = recs[-1]
    ax.set_title("default model: final held-out loss %.3f (ppl %.1f), %d steps, %.0f min"
                 % (last["heldout_loss"], 2.718281828 ** last["heldout_loss"], last["step"],
                    last["elapsed_s"] / 60), fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
