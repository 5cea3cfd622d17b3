"""edgellmd over HTTP: the "## Server" section of BENCHMARKS.md (make bench-server).

On one generated model (default: the L110M shape of tools/bench/run.py in Q4_0) and one thread
count:
  1. streaming tok/s of one greedy stream over HTTP (fixed max_tokens, EOS suppressed with
     logit_bias) against `edgellm bench` tg of the same length on the same model and threads,
     in pairs: engine measurements (median of 3 runs) in turns with three streams one after
     another from one client process after a warm-up stream (median), each against the mean of
     the engine measurements around it (target: HTTP >= 97% of the engine alone, median of 11
     pairs), each pair on a daemon started for it, as each engine measurement is a process of
     its own; each pair also measures three streams from a client process started for each,
     reported beside it;
  2. aggregate tok/s with 1, 2, 4 and 8 concurrent streams, and the target (>= 2.5x one stream
     at 4) in pairs: one stream and four in turns, each four against the mean of the ones
     around it (median of the pairs); beside it the engine's own ratio, `edgellm bench` with
     four sequences per pass against one, in pairs the same way (what the daemon's four
     streams, one batch of four per pass, can reach when HTTP costs nothing);
  3. a bounded wrk run (64 connections, 60 s) posting small completions: requests/s, latency
     p50/p90/p99/max, non-2xx responses and socket errors;
  4. both paired targets again on a second, larger model (default: the L1B shape of
     tools/bench/run.py in Q4_0, TinyLlama-1.1B's shape): where the per-step costs that do not
     grow with the model (attention of 768 KV values per layer and token, the pool's waits, the
     per-token vector work) weigh less against the products (--second none skips it).

usage: /usr/bin/python3 tools/bench/server.py [--quick] [--out FILE] [--threads 2]
       [--tokens 128] [--reps 5] [--pairs 11] [--wrk-seconds 60] [--wrk-connections 64]
       [--model M.gguf] [--second L1B|none]

--quick: a small generated model, short runs, one repetition, written to
$BUILD/bench-server/quick.md unless --out is given (checks the script, not the figures). Only the
"## Server" section of the output is replaced (the file is created if missing). Binaries come
from $BUILD (default build): edgellm, edgellmd, genmodel; models are cached in
$BUILD/bench-models. Benchmarks are not tests: nothing here fails on a slow figure.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pagecache  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SECTION = "## Server"
EOS = 2  # the generated llama vocabulary's </s>
# The generated vocabulary is mostly unused filler tokens whose text is empty, and a stream sends
# no event for a token without text; so every request also raises one ordinary piece (id 308 of
# the generated llama vocabulary: " x") far above the rest, so that every token has text to
# send (within stream_interval, several go out in one event). Each token is still a full pass
# over the weights: the speed measured is the same.
TEXT_TOKEN = 308
# Token ids (no tokenizer differences between runs): BOS alone, so that a stream's first pass
# over the weights is one token, as in the engine's tg runs; a longer prompt makes the first
# pass a batch of several tokens, which costs more than a decode step (4 tokens: about twice as
# much on L110M) and is not part of what tg measures.
PROMPT = [1]
# tools/bench/run.py's L110M shape, and a small one for --quick.
SHAPES = {
    "L110M": dict(n_embd=768, n_layer=12, n_head=12, n_head_kv=12, n_ff=2048, n_vocab=32000),
    "L1B": dict(n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_vocab=32000),
    "quick": dict(n_embd=256, n_layer=4, n_head=4, n_head_kv=4, n_ff=768, n_vocab=2048),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd):
    log("+ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE).stdout


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gen_model(build, shape, typ, path):
    if os.path.exists(path):
        return
    cmd = [os.path.join(build, "genmodel"), "--arch", "llama", "--type", typ, "--seed", "7",
           "--ctx", "2048"]
    for k, v in SHAPES[shape].items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    run(cmd + ["-o", path + ".part"])
    os.replace(path + ".part", path)


class Daemon:
    """build/edgellmd on a free loopback port; its log goes to a file in the work directory."""

    def __init__(self, build, model, threads, work):
        self.logpath = os.path.join(work, "edgellmd.log")
        self.logf = open(self.logpath, "w")
        cmd = [os.path.join(build, "edgellmd"), "--model", model, "--host", "127.0.0.1",
               "--port", "0", "--threads", str(threads), "--slots", "8", "--queue", "256",
               "--ctx", "2048", "--kv-f16", "--max-tokens", "2048", "--request-timeout", "3600"]
        log("+ " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.logf)
        self.port = None
        deadline = time.time() + 300
        while time.time() < deadline:
            with open(self.logpath) as f:
                text = f.read()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
            if self.port and re.search(r"model .* loaded", text):
                break
            if self.proc.poll() is not None:
                sys.exit("bench-server: edgellmd exited:\n" + text)
            time.sleep(0.05)
        else:
            self.stop()
            sys.exit("bench-server: edgellmd did not load the model in 300 s")
        self.model_id = json.loads(self.get("/v1/models"))["data"][0]["id"]

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            c.request("GET", path)
            return c.getresponse().read()
        finally:
            c.close()

    def metrics(self):
        out = {}
        for line in self.get("/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def streams(d, work, n_streams, n_tokens, rounds=1):
    """n_streams greedy streamed completions of exactly n_tokens, sent together by
    $BUILD/sse-client (tools/bench/sse_client.c: one thread, poll, no JSON parsing, so the
    client takes little of the cores the daemon runs on), `rounds` times one after another
    from that one client process. A list of dicts (round by round) with the times
    (CLOCK_MONOTONIC seconds) of sending, of the first and last token's event and of the end,
    the token events and the usage's completion tokens."""
    body = os.path.join(work, "stream-body.json")
    with open(body, "w") as f:
        json.dump({"model": d.model_id, "prompt": PROMPT, "max_tokens": n_tokens,
                   "temperature": 0, "logit_bias": {str(EOS): -100, str(TEXT_TOKEN): 100},
                   "stream": True, "stream_options": {"include_usage": True}}, f)
    cmd = [os.path.join(os.path.dirname(work), "sse-client"), str(d.port), str(n_streams), body,
           str(rounds)]
    p = subprocess.run(cmd, text=True, stdout=subprocess.PIPE)
    out = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    errs = [s["error"] for s in out if "error" in s]
    if p.returncode != 0 or errs or len(out) != n_streams * rounds:
        sys.exit(f"bench-server: {n_streams} streams: {errs[0] if errs else p.returncode}")
    return out


def stream_rate(s):
    """Tokens per second of one stream: all its tokens ÷ the time from sending the request to
    receiving the last token. Like `edgellm bench` tg N, that is N passes over the weights (the
    prompt's pass gives the first token), plus what HTTP, sampling and detokenizing add."""
    return s["tokens"] / (s["last"] - s["send"])


def concurrent(d, work, n_streams, n_tokens):
    m0 = d.metrics()
    out = streams(d, work, n_streams, n_tokens)
    m1 = d.metrics()
    start = min(s["send"] for s in out)
    end = max(s["end"] for s in out)
    total = sum(s["tokens"] for s in out)
    steps = m1["edgellm_batch_sequences_count"] - m0["edgellm_batch_sequences_count"]
    seqs = m1["edgellm_batch_sequences_sum"] - m0["edgellm_batch_sequences_sum"]
    return {"streams": n_streams, "tokens": total, "seconds": end - start,
            "aggregate": total / (end - start),
            "per_stream": statistics.median(stream_rate(s) for s in out),
            "mean_batch": seqs / steps if steps else 0.0}


WRK_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"%s","prompt":%s,"max_tokens":%d,"temperature":0,"logit_bias":{"%d":-100,"%d":100}}'
"""


def parse_latency(text):
    """wrk's "12.34ms" → seconds."""
    m = re.match(r"([0-9.]+)(us|ms|s|m)$", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]


def run_wrk(d, work, connections, seconds, max_tokens):
    lua = os.path.join(work, "completion.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA % (d.model_id, json.dumps(PROMPT), max_tokens, EOS, TEXT_TOKEN))
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "120s",
           "--latency", "-s", lua, f"http://127.0.0.1:{d.port}/v1/completions"]
    m0 = d.metrics()
    log("+ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE).stdout
    m1 = d.metrics()
    print(out)
    res = {"cmd": " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd),
           "connections": connections, "seconds": seconds, "max_tokens": max_tokens}
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        res["p" + pct] = parse_latency(m.group(1)) if m else None
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    res["max"] = parse_latency(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([0-9.]+)(\w+)", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    # wrk prints the line only when there were socket errors.
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                    map(int, m.groups()) if m else (0, 0, 0, 0)))
    res["tokens"] = m1["edgellm_generated_tokens_total"] - m0["edgellm_generated_tokens_total"]
    steps = m1["edgellm_batch_sequences_count"] - m0["edgellm_batch_sequences_count"]
    seqs = m1["edgellm_batch_sequences_sum"] - m0["edgellm_batch_sequences_sum"]
    res["mean_batch"] = seqs / steps if steps else 0.0
    res["rejected"] = (m1["edgellm_requests_rejected_total"] -
                       m0["edgellm_requests_rejected_total"])
    return res


def fmt_s(x, ms_digits=0):
    if x is None:
        return "-"
    return f"{x * 1000:.{ms_digits}f} ms" if x < 10 else f"{x:.1f} s"


def fmt_ttft(single):
    """Time to first token: median and 90th percentile, in tenths of a millisecond."""
    return f"{fmt_s(single['ttft'], 1)} (90th percentile {fmt_s(single['ttft_p90'], 1)})"


def engine_span(single):
    """The range of a pairs run's engine measurements: how far the host's speed moved."""
    e = single.get("engine") or []
    return f", {min(e):.1f}–{max(e):.1f} tok/s" if e else ""


def spawned_text(single):
    """The pairs' figure with a client process started for each stream."""
    sp = single.get("spawned") or []
    if not sp:
        return ""
    return ("With a client process started for each of the three streams instead (between the "
            "same engine measurements; the two clients took turns going first): median "
            f"{100 * statistics.median(sp):.1f}%; pairs "
            + ", ".join(f"{100 * x:.1f}%" for x in sp) + ".")


def render(meta, bench, single, conc, conc_pairs, wrk, big=None):
    L = [SECTION, ""]
    L.append("Written by `make bench-server` (tools/bench/server.py); do not edit by hand. "
             "edgellmd on loopback against the engine alone, on the same model and threads. "
             "This machine may be shared: compare figures of one run only (load average "
             "below).\n")
    if meta["quick"]:
        L.append("**Quick run (`--quick`): a small model and short runs, to check the script; "
                 "these figures say nothing about the targets.**\n")
    L.append(f"- date: {meta['start']:%Y-%m-%d %H:%M}–{meta['end']:%H:%M} UTC; load average "
             f"before {meta['load_before']}, after {meta['load_after']}")
    L.append(f"- model: {meta['model_desc']} ({meta['size'] / 1048576:.0f} MiB), "
             f"`{meta['model_rel']}`")
    L.append(f"- threads: {meta['threads']}; daemon: `edgellmd --threads {meta['threads']} "
             "--slots 8 --ctx 2048 --kv-f16` (fp16 KV cache, the daemon's default; the engine "
             "runs with `--kv-f16` too); cpu: " + meta["cpu"])
    L.append(f"- requests: completions, prompt of {len(PROMPT)} token id(s) (BOS: the first "
             "pass is one token, as in tg), greedy, "
             f"`max_tokens` {meta['tokens']}, EOS suppressed and one text piece raised with "
             "`logit_bias` (the generated vocabulary is mostly text-less filler); the daemon's "
             "default `stream_interval` (0.01 s): tokens decoded within 10 ms of the last send "
             "go out together")
    L.append("")
    L.append("### One stream over HTTP against `edgellm bench`\n")
    L.append(f"HTTP tok/s: the {meta['tokens']} tokens ÷ the time from sending the request to "
             "receiving the last token, as the client sees it (median of "
             f"{3 * meta['pairs']}, from the pairs below: {meta['pairs']} "
             f"daemon{'s' if meta['pairs'] != 1 else ''}, each after a warm-up stream): "
             f"{meta['tokens']} passes over the weights, "
             "like "
             f"the engine's tg{meta['tokens']} (`{bench['cmd']}`, median), plus sampling, "
             "detokenizing, JSON and HTTP. Client: `sse-client` (tools/bench/sse_client.c), "
             "one thread reading every stream with poll and no JSON parsing, on the same "
             "machine; the streams of a measurement follow each other from one client "
             "process after a warm-up stream, as the engine's runs do in its process after its "
             "warm-up run.\n")
    ratio = single["rate"] / bench["tok_per_s"] if bench["tok_per_s"] else 0.0
    pair = statistics.median(single["pairs"])
    ok = "✓" if pair >= 0.97 else "✗"
    L.append("| measurement | tok/s | min–max | time to first token |")
    L.append("|---|---|---|---|")
    L.append(f"| `edgellm bench` tg{meta['tokens']} | {bench['tok_per_s']:.1f} | "
             f"{bench['tok_per_s_min']:.1f}–{bench['tok_per_s_max']:.1f} | - |")
    L.append(f"| HTTP stream, one client | {single['rate']:.1f} | {single['min']:.1f}–"
             f"{single['max']:.1f} | {fmt_ttft(single)} |")
    L.append("")
    L.append("HTTP / engine, in pairs: engine measurements (`-r 3`, median) and three streams "
             "one after another from one client process after a warm-up stream (median) in "
             "turns, each streams' median against the mean of the engine measurements just "
             "before and after it; each pair's streams on a daemon started for the pair, as "
             "each engine measurement is a process of its own (processes of one binary differ "
             "by a few percent here, each for its lifetime) "
             f"({meta['pairs']} pairs, {meta['pairs'] + 1} engine measurements"
             + engine_span(single) + "): "
             f"median **{100 * pair:.1f}%** (target ≥ 97% {ok}); pairs "
             + ", ".join(f"{100 * x:.1f}%" for x in single["pairs"])
             + f". The medians of the table above, measured minutes apart: {100 * ratio:.1f}%. "
             + spawned_text(single) + "\n")
    L.append("### Concurrent streams\n")
    L.append("N clients start together, each streaming the same request. Aggregate: all tokens "
             "÷ time from the first request sent to the last stream's end. Per stream: median "
             "of each stream's tokens ÷ its request-to-last-token time. Sequences per step: mean batch of the engine "
             "(`edgellm_batch_sequences`).\n")
    L.append("| streams | aggregate tok/s | × one stream | per-stream tok/s | sequences per "
             "step |")
    L.append("|---|---|---|---|---|")
    base = conc[0]["aggregate"] if conc else 0.0
    for c in conc:
        L.append(f"| {c['streams']} | {c['aggregate']:.1f} | {c['aggregate'] / base:.2f}× | "
                 f"{c['per_stream']:.1f} | {c['mean_batch']:.2f} |")
    at4 = next((c["aggregate"] / base for c in conc if c["streams"] == 4), None)
    pair4 = statistics.median(conc_pairs)
    L.append("")
    L.append("At 4 streams, in pairs: one stream and four streams in turns, each four-stream "
             "aggregate against the mean of the one-stream aggregates just before and after it "
             f"({meta['pairs']} pairs): median **{pair4:.2f}×** one stream (target ≥ 2.5× "
             f"{'✓' if pair4 >= 2.5 else '✗'}); pairs "
             + ", ".join(f"{x:.2f}×" for x in conc_pairs)
             + (f". The table's rows, measured minutes apart: {at4:.2f}×." if at4 else "."))
    if meta.get("engine4"):
        e4 = meta["engine4"]
        L.append("")
        L.append("The engine alone, four sequences per pass against one (`edgellm bench` tg "
                 f"{meta['tokens']} with `-s 4` and without, `-r 3` each, in turns as above, the "
                 f"daemon idle; {len(e4)} pairs): median **{statistics.median(e4):.2f}×**; pairs "
                 + ", ".join(f"{x:.2f}×" for x in e4)
                 + ". The daemon decodes four streams as one batch of four per pass: this is "
                 "what its ratio comes to when HTTP costs nothing.")
    if meta.get("rss"):
        L.append("")
        L.append(f"Daemon memory after these runs, every one of its 8 slots having held a "
                 f"sequence of {meta['tokens'] + len(PROMPT)} positions: RSS "
                 f"{meta['rss'] / 1048576:.0f} MiB (`process_resident_memory_bytes`; the model "
                 f"file is {meta['size'] / 1048576:.0f} MiB; the KV cache is committed as "
                 "sequences fill it, a block of 256 positions at a time).")
    L.append("")
    L.append("### Bounded load (wrk)\n")
    se = wrk["socket_errors"]
    L.append(f"`{wrk['cmd']}`: {wrk['connections']} connections for {wrk['seconds']} s, each "
             f"request a completion of {wrk['max_tokens']} tokens.\n")
    L.append("| requests | req/s | generated tok/s | p50 | p90 | p99 | max | non-2xx | socket "
             "errors (connect/read/write/timeout) | queue rejections | sequences per step |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    L.append(f"| {wrk['requests']} | {wrk['rps']:.1f} | {wrk['tokens'] / wrk['seconds']:.1f} | "
             f"{fmt_s(wrk['p50'])} | {fmt_s(wrk['p90'])} | {fmt_s(wrk['p99'])} | "
             f"{fmt_s(wrk['max'])} | {wrk['non2xx']} | "
             f"{se['connect']}/{se['read']}/{se['write']}/{se['timeout']} | "
             f"{wrk['rejected']:.0f} | {wrk['mean_batch']:.2f} |")
    L.append("")
    if big:
        b1, b4 = statistics.median(big["single"]["pairs"]), statistics.median(big["four"])
        L.append("### Both targets on a larger model\n")
        L.append(f"{big['desc']} ({big['size'] / 1048576:.0f} MiB), `{big['rel']}`: the same "
                 "daemon flags, requests and pairs as above, on a model whose products "
                 "outweigh the per-step costs that do not grow with it.\n")
        L.append(f"- HTTP / engine: median **{100 * b1:.1f}%** (target ≥ 97% "
                 f"{'✓' if b1 >= 0.97 else '✗'}); pairs "
                 + ", ".join(f"{100 * x:.1f}%" for x in big["single"]["pairs"])
                 + f" (engine measurements{engine_span(big['single'])})"
                 + f"; HTTP stream {big['single']['rate']:.1f} tok/s (median), time to first "
                 f"token {fmt_ttft(big['single'])}. " + spawned_text(big["single"]))
        L.append(f"- 4 streams against one: median **{b4:.2f}×** (target ≥ 2.5× "
                 f"{'✓' if b4 >= 2.5 else '✗'}); pairs "
                 + ", ".join(f"{x:.2f}×" for x in big["four"]))
        L.append("")
    return "\n".join(L) + "\n"


def write_section(out, text):
    """Replaces the section in out (up to the next '## ' heading), or appends it."""
    old = ""
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            old = f.read()
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == SECTION), None)
    if start is None:
        new = ("# Benchmarks\n\n" + text) if not old else old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + rest if rest else "")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(out + ".tmp", out)


def shape_model(build, shape):
    """The generated Q4_0 model of a shape, and its description."""
    model = os.path.join(build, "bench-models", f"{shape.lower()}-q4_0.gguf")
    gen_model(build, shape, "q4_0", model)
    s = SHAPES[shape]
    desc = (f"{shape} shape in Q4_0, random weights (dim {s['n_embd']}, {s['n_layer']} "
            f"layers, {s['n_head']} heads, {s['n_head_kv']} KV heads, ffn {s['n_ff']}, vocab "
            f"{s['n_vocab']})")
    return model, desc


def engine_tg(cmd):
    """tok/s of `edgellm bench` tg (the median of its runs)."""
    return next(r for r in json.loads(run(cmd)) if r["test"] == "tg")["tok_per_s"]


def http_pairs(start_daemon, work, one, tokens, n_pairs):
    """The HTTP/engine target in pairs: engine measurements (`one`: -r 3, median) taken in turns
    with three streams (median), E S E S ... E, each streams' median against the mean of the
    engine measurements just before and just after it, so that a drift of the host's speed
    within a pair (this host's moves by more than the difference measured, in seconds) counts
    on both sides; both sides are medians of three, not one draw of a noisy distribution
    against a centre.

    Each pair's streams go to a daemon started for the pair (start_daemon()) and stopped before
    the next engine measurement, after a warm-up stream. Each engine measurement is a process
    of its own too: on this host, processes of one binary run at speeds that differ by a few
    percent, each for its lifetime (daemons of one build, streams in turns: 1.000, 1.001, 1.026
    and 1.016 of the first, the fastest faster in 25 of 30 rounds), so one daemon for all the
    pairs would have put one such draw against the median of twelve.

    The three streams follow each other from one client process, as the engine's three runs do
    within its process and as an application's requests do, after a warm-up stream from that
    process as the engine's runs follow its warm-up run. Each pair also takes three streams
    from a client process started for each (the way this script measured before), between the
    same engine measurements: reported beside the target; the two take turns going first."""
    rates, ttfts, pairs, spawned = [], [], [], []
    eng = [engine_tg(one)]
    for i in range(n_pairs):
        d = start_daemon()
        try:
            meds = pair_streams(d, work, tokens, i, rates, ttfts)
        finally:
            d.stop()
        eng.append(engine_tg(one))
        ref = (eng[-2] + eng[-1]) / 2
        pairs.append(meds[0] / ref if ref else 0.0)
        spawned.append(meds[1] / ref if ref else 0.0)
    return {"rate": statistics.median(rates), "min": min(rates), "max": max(rates),
            "ttft": statistics.median(ttfts), "ttft_p90": statistics.quantiles(ttfts, n=10)[8],
            "pairs": pairs, "spawned": spawned, "engine": eng}


def pair_streams(d, work, tokens, i, rates, ttfts):
    """One pair's streams on daemon d, after a warm-up stream: {0: the median of three from one
    client process, 1: of three from a process each}; the two go first in turns (by i). The
    one-process streams' rates and times to first token are added to rates and ttfts."""
    streams(d, work, 1, tokens)
    meds = {}
    for mode in ((0, 1) if i % 2 == 0 else (1, 0)):
        if mode == 0:
            # after a warm-up stream, as the engine's runs come after its warm-up run: the
            # first stream after another process has run reads slower (2.5% on L110M)
            three = streams(d, work, 1, tokens, rounds=4)[1:]
            for s in three:
                rates.append(stream_rate(s))
                ttfts.append(s["first"] - s["send"])
        else:
            three = [streams(d, work, 1, tokens)[0] for _ in range(3)]
        for s in three:
            if s["tokens"] != tokens:
                sys.exit(f"bench-server: {s['tokens']} tokens, asked for {tokens}")
        meds[mode] = statistics.median(stream_rate(s) for s in three)
    return meds


def four_pairs(d, work, tokens, n_pairs):
    """The 4-stream target in pairs as the HTTP/engine target's (the host's speed drifts between
    the table's rows): one stream and four streams in turns, 1 4 1 4 ... 1, each four-stream
    aggregate against the mean of the one-stream aggregates just before and just after it."""
    return in_turns(lambda: concurrent(d, work, 1, tokens)["aggregate"],
                    lambda: concurrent(d, work, 4, tokens)["aggregate"], n_pairs)


def in_turns(one, four, n_pairs):
    """one() and four() in turns, 1 4 1 4 ... 1: each four() against the mean of the one()s
    just before and just after it (n_pairs ratios)."""
    out, ones = [], [one()]
    for _ in range(n_pairs):
        x = four()
        ones.append(one())
        ref = (ones[-2] + ones[-1]) / 2
        out.append(x / ref if ref else 0.0)
    return out


def engine_four_pairs(cmd1, cmd4, n_pairs):
    """The engine's own four sequences per pass against one, in pairs as four_pairs: `edgellm
    bench` tg with -s 1 and -s 4 in turns, each four-sequence rate against the mean of the
    one-sequence rates just before and after it. The daemon decodes its four streams as one
    batch of four per pass, so this is the ratio its four streams can reach when HTTP costs
    nothing."""
    return in_turns(lambda: engine_tg(cmd1), lambda: engine_tg(cmd4), n_pairs)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--model", default=None, help="a GGUF instead of the generated one")
    ap.add_argument("--second", default=None,
                    help="the second model's shape for the paired targets (L1B; none skips; "
                         "quick: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=None, help="max_tokens (128; quick 32)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions of the engine's table row and of each stream count (5, at "
                         "most 3 for the streams; quick 1)")
    ap.add_argument("--pairs", type=int, default=None,
                    help="pairs for each paired target (11; quick 1): one pair's ratio moves by "
                         "5-10%% with this host's speed, the median of 11 much less")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--wrk-seconds", type=int, default=None, help="60; quick 3")
    ap.add_argument("--wrk-connections", type=int, default=None, help="64; quick 8")
    ap.add_argument("--wrk-tokens", type=int, default=16, help="max_tokens of a wrk request")
    args = ap.parse_args(argv)
    q = args.quick
    tokens = args.tokens or (32 if q else 128)
    reps = args.reps or (1 if q else 5)
    n_pairs = args.pairs or (1 if q else 11)
    wrk_seconds = args.wrk_seconds or (3 if q else 60)
    wrk_conns = args.wrk_connections or (8 if q else 64)
    second = args.second or ("none" if q else "L1B")
    if second != "none" and second not in SHAPES:
        sys.exit(f"bench-server: --second {second}: one of {', '.join(SHAPES)} or none")
    build = os.environ.get("BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    work = os.path.join(build, "bench-server")
    os.makedirs(work, exist_ok=True)
    out = args.out or (os.path.join(work, "quick.md") if q else os.path.join(ROOT, "BENCHMARKS.md"))

    if args.model:
        model, desc = args.model, os.path.basename(args.model)
    else:
        model, desc = shape_model(build, "quick" if q else "L110M")

    def rel(path):
        return os.path.relpath(path, ROOT) if path.startswith(ROOT) else path

    meta = {"quick": q, "start": datetime.datetime.now(datetime.timezone.utc),
            "load_before": loadavg(), "threads": args.threads, "tokens": tokens, "reps": reps,
            "pairs": n_pairs,
            "model_desc": desc, "size": os.path.getsize(model), "cpu": cpu_name(),
            "model_rel": rel(model)}

    def bench_cmd(m, r, seqs=1):
        return [os.path.join(build, "edgellm"), "bench", "-m", m, "-t", str(args.threads), "-p",
                "0", "-n", str(tokens), "-r", str(r), "--kv-f16", "--json"] + (
                    ["-s", str(seqs)] if seqs > 1 else [])

    # 1. The engine alone. The model starts uncached, as after a reboot (pagecache.py); the
    # engine's warm-up reads it in, and the daemon started after it maps the same pages.
    pagecache.drop(model)
    cmd = bench_cmd(model, max(reps, 3))
    bench = next(r for r in json.loads(run(cmd)) if r["test"] == "tg")
    bench["cmd"] = " ".join(rel(c) for c in cmd[:-1]).replace(meta["model_rel"], "MODEL")
    log(f"edgellm bench tg{tokens}: {bench['tok_per_s']:.1f} tok/s")

    # 2. One stream against the engine, in pairs (a daemon started for each pair).
    single = http_pairs(lambda: Daemon(build, model, args.threads, work), work,
                        bench_cmd(model, 3), tokens, n_pairs)
    log(f"HTTP stream: {single['rate']:.1f} tok/s "
        f"({100 * single['rate'] / bench['tok_per_s']:.1f}% of edgellm bench; "
        f"pairs {', '.join(f'{100 * x:.1f}%' for x in single['pairs'])})")

    d = Daemon(build, model, args.threads, work)
    try:
        # 3. Concurrent streams (median of the repetitions by aggregate rate).
        conc = []
        for n in (int(x) for x in args.streams.split(",")):
            runs = sorted((concurrent(d, work, n, tokens) for _ in range(max(1, min(reps, 3)))),
                          key=lambda r: r["aggregate"])
            c = runs[len(runs) // 2]
            conc.append(c)
            log(f"{n} streams: {c['aggregate']:.1f} tok/s aggregate, "
                f"{c['mean_batch']:.2f} sequences per step")
        # the daemon's memory once all 8 slots have held a sequence (the 8-stream runs)
        meta["rss"] = d.metrics().get("process_resident_memory_bytes", 0.0)
        conc_pairs = four_pairs(d, work, tokens, n_pairs)
        log("4 streams / one stream, pairs: " + ", ".join(f"{x:.2f}x" for x in conc_pairs))
        meta["engine4"] = engine_four_pairs(bench_cmd(model, 3), bench_cmd(model, 3, 4), n_pairs)
        log("edgellm bench 4 sequences / one, pairs: "
            + ", ".join(f"{x:.2f}x" for x in meta["engine4"]))

        # 4. wrk.
        wrk = run_wrk(d, work, wrk_conns, wrk_seconds, args.wrk_tokens)
        log(f"wrk: {wrk['requests']} requests, p50 {fmt_s(wrk['p50'])}, p99 {fmt_s(wrk['p99'])}, "
            f"non-2xx {wrk['non2xx']}")
    finally:
        d.stop()

    # 5. Both paired targets on the second model.
    big = None
    if second != "none":
        model2, desc2 = shape_model(build, second)
        engine_tg(bench_cmd(model2, 1))  # reads the model in before the daemon maps it
        big = {"desc": desc2, "size": os.path.getsize(model2), "rel": rel(model2),
               "single": http_pairs(lambda: Daemon(build, model2, args.threads, work), work,
                                    bench_cmd(model2, 3), tokens, n_pairs)}
        d = Daemon(build, model2, args.threads, work)
        try:
            big["four"] = four_pairs(d, work, tokens, n_pairs)
        finally:
            d.stop()
        log(f"{second}: HTTP/engine pairs "
            + ", ".join(f"{100 * x:.1f}%" for x in big["single"]["pairs"])
            + "; 4 streams / one stream, pairs " + ", ".join(f"{x:.2f}x" for x in big["four"]))
    meta["end"] = datetime.datetime.now(datetime.timezone.utc)
    meta["load_after"] = loadavg()
    write_section(out, render(meta, bench, single, conc, conc_pairs, wrk, big))
    print(json.dumps({"bench": bench, "single": single, "concurrent": conc,
                      "concurrent_pairs_4_over_1": conc_pairs, "wrk": wrk, "second": big},
                     indent=1, default=str))
    log(f"wrote the '{SECTION}' section of {out}")

if __name__ == "__main__":
    main(sys.argv[1:])
