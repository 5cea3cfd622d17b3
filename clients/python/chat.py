#!/usr/bin/python3
"""chat.py — a terminal chat with edgellmd (standard library only).

    clients/python/chat.py [--url http://127.0.0.1:8080] [--key KEY] [--system TEXT]
                           [--temperature T] [--max-tokens N] [--seed S]

Type a message and press Enter; the answer streams in. Commands: /reset (forget the
conversation), /quit (or Ctrl-D). EDGELLM_URL and EDGELLM_API_KEY are read from the environment.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edgellm_client import APIError, Client  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="Chat with edgellmd in the terminal.")
    ap.add_argument("--url", default=os.environ.get("EDGELLM_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--key", default=os.environ.get("EDGELLM_API_KEY"))
    ap.add_argument("--model", default=None, help="model id (default: the served model)")
    ap.add_argument("--system", default=None, help="system message")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    client = Client(args.url, api_key=args.key)
    params = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.seed is not None:
        params["seed"] = args.seed
    try:
        model = args.model or client.model()
    except (APIError, OSError) as e:
        print(f"chat: cannot reach {args.url}: {e}", file=sys.stderr)
        return 1
    history = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {model} at {args.url} (/reset, /quit)")
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line == "/quit":
            break
        if line == "/reset":
            history = history[:1] if args.system else []
            continue
        history.append({"role": "user", "content": line})
        answer = []
        try:
            for text in client.chat_stream_text(history, model=model, **params):
                answer.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
        except APIError as e:
            print(f"\n[error {e.status}: {e.message}]", file=sys.stderr)
            history.pop()
            continue
        except KeyboardInterrupt:
            print("\n[interrupted]")
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": "".join(answer)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
