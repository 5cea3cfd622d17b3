#!/usr/bin/python3
"""Layer-wise unified compression (LUC) against uniform formats: the "## Compression (LUC)"
section of BENCHMARKS.md (make bench-compress).

For one model (default models/default.gguf):
  - LUC at 3.0, 3.5, 4.0, 4.5, 5.5 and 6.5 bits per weight (edgellm compress --target-bpw);
  - uniform Q3_K, Q4_K, Q5_K, Q6_K and Q8_0 (edgellm compress --uniform: every weight matrix,
    embedding and output head included, in that format);
  - LUC at each uniform file's exact size (--target-size), the equal-size comparison;
  - for each: edgellm perplexity -m OUT --kld-base MODEL: perplexity, mean and p99 KL divergence
    to the model, top-1 agreement.
models/heldout.txt is split at the middle line: compression calibrates on the first half,
perplexity and KL divergence are measured on the second half (never the same text).
Compress time and peak RSS come from each compress report; the same figure is measured for a
generated TinyLlama-1.1B-shaped model (F16, the shape and seed tools/bench/run.py uses, cached in
$BUILD/bench-models).

The section states the goal and checks it: LUC has lower KL divergence than the uniform format
at every uniform file's size, and at 4.5 bits per weight (Q4_K's size) at most 0.8x its KL
divergence. Only this section of BENCHMARKS.md is replaced (the file is created if missing).

usage: /usr/bin/python3 tools/bench/compress.py [--model M.gguf] [--text heldout.txt]
       [--out BENCHMARKS.md] [--threads 2] [--ctx 512] [--skip-big] [--quick]
--skip-big keeps the 1.1B subsection of the previous run in the output file, with its date.
--quick checks the script, not the figures: fewer points, short calibration and evaluation, a
small generated model instead of the 1.1B one, and the section goes to $BUILD/bench-compress/
quick.md unless --out is given. Binaries come from $BUILD (default build). Benchmarks are not
tests: nothing here fails on a figure.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdsection import replace_section  # noqa: E402

SECTION = "## Compression (LUC)"
LUC_BPW = [3.0, 3.5, 4.0, 4.5, 5.5, 6.5]
UNIFORM = ["q3_k", "q4_k", "q5_k", "q6_k", "q8_0"]
QUICK_LUC_BPW = [3.5, 4.5]
QUICK_UNIFORM = ["q4_k", "q8_0"]
# TinyLlama-1.1B's shape, as tools/bench/run.py generates it (seed 7, context 2048)
L1B = dict(n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_vocab=32000)
QUICK_BIG = dict(n_embd=512, n_layer=2, n_head=8, n_head_kv=4, n_ff=1024, n_vocab=1024)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd):
    log("+ " + " ".join(cmd))
    r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"bench-compress: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def machine_info():
    info = {"kernel": platform.release(), "arch": platform.machine()}
    try:
        for line in subprocess.run(["lscpu"], text=True, stdout=subprocess.PIPE).stdout.splitlines():
            k, _, v = line.partition(":")
            if k in ("Model name", "CPU(s)", "Hypervisor vendor"):
                info[k] = v.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory"] = f.readline().split(":")[1].strip()
    except OSError:
        pass
    return info


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def split_text(path, work):
    """First half of the lines → calibration, second half → evaluation."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    mid = len(lines) // 2
    calib, evalt = os.path.join(work, "calib.txt"), os.path.join(work, "eval.txt")
    for p, part in ((calib, lines[:mid]), (evalt, lines[mid:])):
        with open(p + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(part)
        os.replace(p + ".tmp", p)
    return calib, evalt, mid, len(lines)


def context_length(edgellm, model):
    m = re.search(r"\.context_length\s+u32\s+(\d+)", run([edgellm, "info", model]))
    return int(m.group(1)) if m else 2048


def gen_model(build, shape, path, typ="f16"):
    if os.path.exists(path):
        return path
    cmd = [os.path.join(build, "genmodel"), "--arch", "llama", "--type", typ, "--seed", "7",
           "--ctx", "2048"]
    for k, v in shape.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    t0 = time.time()
    run(cmd + ["-o", path + ".part"])
    os.replace(path + ".part", path)
    log(f"generated {path} in {time.time() - t0:.0f} s")
    return path


class Bench:
    def __init__(self, args, build, work):
        self.args, self.build, self.work = args, build, work
        self.edgellm = os.path.join(build, "edgellm")
        self.calib_opts = (["--calib-tokens", "1024", "--kl-tokens", "256", "--chunk", "128"]
                           if args.quick else [])

    def compress(self, model, name, mode, calib, opts=None):
        out = os.path.join(self.work, name + ".gguf")
        rep = os.path.join(self.work, name)
        cmd = [self.edgellm, "compress", "-m", model, "-o", out, "--calib", calib, "-q",
               "-t", str(self.args.threads), "--report", rep,
               *(self.calib_opts if opts is None else opts), *mode]
        run(cmd)
        with open(rep + ".json") as f:
            r = json.load(f)
        return {"name": name, "path": out, "mode": " ".join(mode), "bytes": os.path.getsize(out),
                "bpw": r["bpw"], "seconds": r["seconds"], "peak_rss": r["peak_rss_bytes"],
                "calib_kld": r["measured_kld"], "cmd": cmd}

    def cached(self, name, key, make):
        """make() once per key: a row already measured for the same model file, mode, binary and
        text (an interrupted run resumes) is read back from WORK/NAME.row.json."""
        path = os.path.join(self.work, name + ".row.json")
        try:
            with open(path) as f:
                saved = json.load(f)
            if saved.get("key") == key and os.path.exists(saved["row"]["path"]):
                log(f"(reusing {path})")
                return saved["row"]
        except (OSError, ValueError, KeyError):
            pass
        row = make()
        with open(path + ".tmp", "w") as f:
            json.dump({"key": key, "row": row}, f)
        os.replace(path + ".tmp", path)
        return row

    def evaluate(self, row, model, evalt, ctx):
        cmd = [self.edgellm, "perplexity", "-m", row["path"], "--kld-base", model, "-f", evalt,
               "-c", str(ctx), "-t", str(self.args.threads), "--json"]
        if self.args.quick:
            cmd += ["--chunks", "8"]
        o = json.loads(run(cmd))
        row.update(ppl=o["ppl"], kld=o["kld"]["mean"], p99=o["kld"]["p99"],
                   top1=o["kld"]["top1_agreement"], positions=o["kld"]["positions"],
                   base_ppl=o["kld"]["base_ppl"], ppl_cmd=cmd)
        return row


def interp_uniform(uniform, size):
    """KL divergence of the uniform curve at a file size: log-linear between the two uniform
    formats around it (a mix of the two); None outside their range."""
    pts = sorted((u["bytes"], u["kld"]) for u in uniform)
    for (b0, k0), (b1, k1) in zip(pts, pts[1:]):
        if b0 <= size <= b1 and k0 > 0 and k1 > 0:
            w = (size - b0) / (b1 - b0) if b1 > b0 else 0
            return math.exp((1 - w) * math.log(k0) + w * math.log(k1))
    return None


BIG_HEADING = "### Compress time and peak RSS of a 1.1B model"


def previous_big(out):
    """The 1.1B subsection of an earlier full run in OUT, with that run's date line, or None.
    --skip-big keeps it (the 1.1B figure depends on the binary and the calibration text, not on
    the default model), saying when it was measured."""
    if not os.path.exists(out):
        return None
    with open(out, encoding="utf-8") as f:
        text = f.read()
    start = text.find("\n" + SECTION + "\n")
    if start < 0:
        return None
    end = text.find("\n## ", start + 1)
    sec = text[start:end if end >= 0 else len(text)]
    b = sec.find(BIG_HEADING)
    m = re.search(r"^- date: (.*?);", sec, re.M)
    if b < 0 or not m:
        return None
    body = sec[b + len(BIG_HEADING):].strip("\n")
    kept = re.match(r"Measured by an earlier run \(([^)]*)\)[^\n]*\n\n", body)
    if kept:  # kept once already: the date is the run that measured it
        return kept.group(1), body[kept.end():]
    return m.group(1), body


def section(args, model, rows, uniform, same, big, info, meta, kept_big=None):
    mib = 1048576.0

    def rel(p):
        p = os.path.abspath(p)
        return os.path.relpath(p, ROOT) if p.startswith(ROOT) else p

    L = [SECTION, ""]
    L.append(f"Written by `make bench-compress` (tools/bench/compress.py); do not edit by hand. "
             f"Benchmarks are not tests.{' **--quick run: checks the script, not the figures.**' if args.quick else ''}")
    L.append("")
    L.append(f"- date: {meta['start']:%Y-%m-%d %H:%M}–{meta['end']:%H:%M} UTC; load average "
             f"before {meta['load_before']}, after {meta['load_after']}")
    L.append("- command: `" + " ".join(["/usr/bin/python3", "tools/bench/compress.py"]
                                      + meta["argv"]) + "`" + ("" if meta["argv"] else
                                                                " (`make bench-compress`)"))
    L.append(f"- model: `{rel(model)}` ({os.path.getsize(model) / mib:.1f} MiB); base perplexity "
             f"{meta['base_ppl']:.4f} on the evaluation half")
    L.append(f"- text: `{rel(args.text)}` split at line {meta['mid']} of {meta['n_lines']}: "
             f"lines 1–{meta['mid']} calibrate, lines {meta['mid'] + 1}–{meta['n_lines']} "
             f"evaluate ({meta['positions']} scored positions, context {meta['ctx']})")
    c0, p0 = rows[0]["cmd"], rows[0]["ppl_cmd"]
    L.append("- each compress: `" + " ".join(rel(x) if os.sep in x else x for x in c0[:1])
             + " compress -m MODEL -o OUT --calib CALIB -q -t "
             + str(args.threads) + " --report PREFIX" + "".join(" " + x for x in meta["copts"])
             + "` + `--target-bpw B`, `--uniform TYPE` or `--target-size BYTES`")
    L.append("- each evaluation: `" + rel(p0[0]) + " perplexity -m OUT --kld-base MODEL -f EVAL "
             + " ".join(p0[p0.index("-c"):]) + "`")
    for k in ("Model name", "CPU(s)", "memory", "kernel", "Hypervisor vendor"):
        if k in info:
            L.append(f"- {k.lower()}: {info[k]}")
    L.append("")
    L.append("KL divergence: KL(model ‖ compressed) in nats per scored token, mean and 99th "
             "percentile; top-1: share of positions where both argmaxes agree; PPL on the "
             "evaluation half (llama.cpp's method). bpw: bits per weight over all tensors. "
             "Uniform formats put every weight matrix (embedding and output head included) in "
             "one format; LUC chooses per tensor under the budget.")
    L.append("")
    L.append("| file | size MiB | bpw | PPL | mean KLD | p99 KLD | top-1 | compress s | "
             "peak RSS MiB |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    L.append(f"| input | {os.path.getsize(model) / mib:.2f} | - | {meta['base_ppl']:.4f} | 0 | "
             "0 | 1 | - | - |")
    for r in sorted(rows, key=lambda r: (r["bytes"], r["name"])):
        L.append(f"| {r['label']} | {r['bytes'] / mib:.2f} | {r['bpw']:.3f} | {r['ppl']:.4f} | "
                 f"{r['kld']:.5f} | {r['p99']:.5f} | {r['top1']:.4f} | {r['seconds']:.1f} | "
                 f"{r['peak_rss'] / mib:.0f} |")
    L.append("")
    L.append("### Against the goal\n")
    L.append("Goal: LUC has lower KL divergence than the uniform format at every size, and at 4.5 "
             "bits per weight at most 0.8× the KL divergence of the uniform mix of the same "
             "size. Equal size: LUC with `--target-size` set to the uniform file's size.\n")
    L.append("| size of | uniform KLD | LUC KLD (same size) | ratio | lower |")
    L.append("|---|---|---|---|---|")
    all_lower = True
    for u in sorted(uniform, key=lambda r: r["bytes"]):
        s = same.get(u["name"])
        if not s:
            continue
        ratio = s["kld"] / u["kld"] if u["kld"] > 0 else float("inf")
        lower = s["kld"] < u["kld"]
        all_lower &= lower
        L.append(f"| {u['label']} ({u['bytes'] / mib:.2f} MiB) | {u['kld']:.5f} | "
                 f"{s['kld']:.5f} | {ratio:.2f} | {'✓' if lower else '✗'} |")
    L.append("")
    luc_pts = [r for r in rows if r["name"].startswith("luc-") and "size" not in r["name"]]
    interp = []
    for r in sorted(luc_pts, key=lambda r: r["bytes"]):
        k = interp_uniform(uniform, r["bytes"])
        if k is not None:
            interp.append(f"{r['label']}: {r['kld']:.5f} vs {k:.5f} "
                          f"({r['kld'] / k:.2f}×{' ✓' if r['kld'] < k else ' ✗'})")
    if interp:
        L.append("LUC at its bits-per-weight targets against the uniform curve at the same file "
                 "size (log-linear between the two uniform formats around it, i.e. a mix of "
                 "them): " + "; ".join(interp) + ".\n")
    q4 = next((u for u in uniform if u["name"] == "uniform-q4_k"), None)
    if q4 and q4["name"] in same and q4["kld"] > 0:
        ratio = same[q4["name"]]["kld"] / q4["kld"]
        L.append(f"- every size: {'✓ LUC lower at every uniform size' if all_lower else '✗ not at every size'}")
        L.append(f"- 4.5 bpw (Q4_K's size, {q4['bpw']:.3f} bpw over all tensors): LUC "
                 f"{same[q4['name']]['kld']:.5f} / uniform Q4_K {q4['kld']:.5f} = {ratio:.2f}× "
                 f"{'✓ (≤ 0.8×)' if ratio <= 0.8 else '✗ (goal ≤ 0.8×)'}")
    else:
        L.append(f"- every size: {'✓' if all_lower else '✗'}; the 4.5 bpw check needs uniform Q4_K")
    L.append("")
    if big:
        L.append(BIG_HEADING + "\n" if not args.quick else
                 "### Compress time and peak RSS of a generated model (quick: small shape)\n")
        L.append(f"Generated {big['shape_name']} (random weights, F16, "
                 f"{big['in_bytes'] / mib:.0f} MiB): `edgellm compress --target-bpw 4.5` with "
                 "the same calibration text"
                 + (" and `" + " ".join(big["opts"]) + "`" if big["opts"] else
                    " and settings") + ".\n")
        L.append("| model | parameters | output MiB | bpw | compress s | peak RSS MiB |")
        L.append("|---|---|---|---|---|---|")
        L.append(f"| {big['shape_name']} | {big['params'] / 1e9:.2f} B | "
                 f"{big['bytes'] / mib:.0f} | {big['bpw']:.3f} | {big['seconds']:.1f} | "
                 f"{big['peak_rss'] / mib:.0f} |")
        L.append("")
    elif kept_big:
        when, body = kept_big
        L.append(BIG_HEADING + "\n")
        L.append(f"Measured by an earlier run ({when}) and kept: this run had --skip-big.\n")
        L.append(body)
        L.append("")
    return "\n".join(L) + "\n"


def write_section(out, text):
    replace_section(out, SECTION, text)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "default.gguf"))
    ap.add_argument("--text", default=os.path.join(ROOT, "models", "heldout.txt"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512, help="perplexity context (at most the model's)")
    ap.add_argument("--skip-big", action="store_true",
                    help="no 1.1B compress-time measurement (an earlier run's is kept, dated)")
    ap.add_argument("--big-calib-tokens", type=int, default=0,
                    help="--calib-tokens for the 1.1B model (default: compress's own)")
    ap.add_argument("--big-kl-tokens", type=int, default=0,
                    help="--kl-tokens for the 1.1B model (default: compress's own)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    build = os.environ.get("BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(ROOT, build)
    work = os.path.join(build, "bench-compress", "quick" if args.quick else "full")
    os.makedirs(work, exist_ok=True)
    out = args.out or (os.path.join(build, "bench-compress", "quick.md") if args.quick
                       else os.path.join(ROOT, "BENCHMARKS.md"))
    if not os.path.exists(args.model):
        sys.exit(f"bench-compress: {args.model} does not exist ('make default-model' trains it; "
                 "--model picks another)")
    bench = Bench(args, build, work)
    calib, evalt, mid, n_lines = split_text(args.text, work)
    ctx = min(args.ctx, context_length(bench.edgellm, args.model))

    meta = {"argv": argv, "load_before": loadavg(), "mid": mid, "n_lines": n_lines, "ctx": ctx,
            "start": datetime.datetime.now(datetime.timezone.utc)}
    luc_bpw = QUICK_LUC_BPW if args.quick else LUC_BPW
    uniform_types = QUICK_UNIFORM if args.quick else UNIFORM
    rows, uniform, same = [], [], {}
    st = [os.stat(p) for p in (args.model, bench.edgellm, args.text)]
    base_key = [args.model, ctx, args.threads, bench.calib_opts] + [
        [s.st_size, s.st_mtime_ns] for s in st]

    def measure(name, mode):
        return bench.cached(name, base_key + [mode], lambda: bench.evaluate(
            bench.compress(args.model, name, mode, calib), args.model, evalt, ctx))

    for typ in uniform_types:
        r = measure(f"uniform-{typ}", ["--uniform", typ])
        r["label"] = f"uniform {typ.upper()}"
        rows.append(r)
        uniform.append(r)
        s = measure(f"luc-size-{typ}", ["--target-size", str(r["bytes"])])
        s["label"] = f"LUC at {typ.upper()}'s size"
        rows.append(s)
        same[r["name"]] = s
    for b in luc_bpw:
        r = measure(f"luc-{b:.1f}", ["--target-bpw", str(b)])
        r["label"] = f"LUC {b:.1f} bpw"
        rows.append(r)
    meta["base_ppl"] = rows[0]["base_ppl"]
    meta["copts"] = bench.calib_opts
    meta["positions"] = rows[0]["positions"]

    big = None
    if not args.skip_big:
        shape, name = (QUICK_BIG, "small (512x2)") if args.quick else (L1B, "TinyLlama-1.1B shape")
        path = (os.path.join(work, "big-f16.gguf") if args.quick
                else os.path.join(build, "bench-models", "l1b-f16.gguf"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        gen_model(build, shape, path)
        big_opts = bench.calib_opts + (["--calib-tokens", str(args.big_calib_tokens)]
                                       if args.big_calib_tokens else []) + (
            ["--kl-tokens", str(args.big_kl_tokens)] if args.big_kl_tokens else [])
        big = bench.compress(path, "big-4.5", ["--target-bpw", "4.5"], calib, big_opts)
        big["opts"] = big_opts
        e, l, ff, v = shape["n_embd"], shape["n_layer"], shape["n_ff"], shape["n_vocab"]
        kv = e // shape["n_head"] * shape["n_head_kv"]
        big["params"] = l * (2 * e * e + 2 * e * kv + 3 * e * ff + 2 * e) + 2 * v * e + e
        big["in_bytes"] = os.path.getsize(path)
        big["shape_name"] = name
        os.unlink(big["path"])
    meta["end"] = datetime.datetime.now(datetime.timezone.utc)
    meta["load_after"] = loadavg()

    kept = previous_big(out) if args.skip_big and not args.quick else None
    write_section(out, section(args, args.model, rows, uniform, same, big, machine_info(), meta,
                               kept))
    print(json.dumps({"rows": [{k: v for k, v in r.items() if k not in ("cmd", "ppl_cmd")}
                               for r in rows], "big": big and {k: v for k, v in big.items()
                                                              if k != "cmd"}}, indent=1))
    log(f"wrote the '{SECTION}' section of {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
