"""`make bench-kernels`: the single-core cost of every matrix kernel (tools/bench/kernels.c), and
the batch sizes where prefill's tile path and sgemm path start to pay — the "## Kernels (one
core)" section of BENCHMARKS.md.

Times are thread CPU time, so they mean something on a machine other work shares. For a weight
format, the tile path costs repack/B + tile per 256 weights per token against vec_dot for the
vec_dot path: it pays from B* = repack / (vec_dot - tile).
For F32/F16/BF16, sgemm pays where its cost per token (to_float/B + sgemm at that B) drops below
vec_dot. engine/internal.h's ENG_TILE_MIN_B and ENG_SGEMM_MIN_B are set from these figures.

Streaming (`bench-kernels -m 384 -R 7 [-c 4]`): how much of one core's read rate each decode
kernel keeps on a matrix far larger than the caches, each kernel pass right after a plain read
pass over the same bytes; the medians of the per-round ratios. Once with one activation row
(single-sequence decode) and once with four (batched decode of four sequences: four times the
arithmetic per weight byte).

Attention (`bench-kernels -a`): one query head over 128, 512 and 2048 cached fp16 positions,
the kernel of each SIMD level, ns per position in cache and from memory.

usage: /usr/bin/python3 tools/bench/kernels.py [--out BENCHMARKS.md] [-n 2048,5632]
       [--stream-mib 384] [--stream-types f16,q8_0,q4_0,q4_0x16,q4_k,q6_k] [--no-attn]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdsection import replace_section  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SECTION = "## Kernels (one core)"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("-n", default="2048,5632", help="row lengths (input widths)")
    ap.add_argument("--stream-mib", type=int, default=384, help="streaming matrix size (0: skip)")
    ap.add_argument("--stream-types", default="f16,q8_0,q4_0,q4_0x16,q4_k,q6_k")
    ap.add_argument("--no-attn", action="store_true", help="skip the attention kernels (-a)")
    args = ap.parse_args(argv)
    build = os.environ.get("BUILD", "build")
    exe = os.path.join(ROOT, build, "bench-kernels") if not os.path.isabs(build) else \
        os.path.join(build, "bench-kernels")
    t0 = datetime.datetime.now(datetime.timezone.utc)
    load0 = loadavg()
    runs = []
    for n in args.n.split(","):
        out = subprocess.run([exe, "-n", n], check=True, text=True, capture_output=True).stdout
        runs.append([json.loads(l) for l in out.splitlines() if l.strip()])
    stream = []
    cols4 = {}
    if args.stream_mib > 0:
        for n in args.n.split(","):
            for nc in (1, 4):
                cmd = [exe, "-t", args.stream_types, "-n", n, "-m", str(args.stream_mib), "-R", "7",
                       "-c", str(nc)]
                out = subprocess.run(cmd, check=True, text=True, capture_output=True).stdout
                got = [json.loads(l) for l in out.splitlines() if l.strip() and "ratio_median" in l]
                if nc == 1:
                    stream += got
                else:
                    cols4.update({(r["type"], r["in"]): r for r in got})
    attn = []
    if not args.no_attn:
        out = subprocess.run([exe, "-a"], check=True, text=True, capture_output=True).stdout
        attn = [json.loads(l) for l in out.splitlines() if l.strip()]
    load1 = loadavg()
    L = [SECTION + "\n"]
    L.append(f"Written by `make bench-kernels` (tools/bench/kernels.py running "
             f"`{build}/bench-kernels -n N`), {t0:%Y-%m-%d %H:%M} UTC, load average {load0} "
             f"before and {load1} after. Single thread, weights in cache (compute cost, not "
             "memory), thread CPU time. ns per 256 weights; tile and sgemm per 256 weights per "
             "token. GB/s: weight bytes one core can consume, to compare with the memory "
             "bandwidth per core. rows ns: the matrix in one vec_dot_rows call (decode's row "
             "ranges) instead of one vec_dot call per row. cols4 ns/col: four activation rows "
             "against each weight row (batched decode), per column. B*: the batch size from "
             "which prefill's path beats the decode path.\n")
    for rows in runs:
        head = rows[0]
        L.append(f"### Rows of {head['in']} weights (kernel level `{head['simd']}`)\n")
        L.append("| type | vec_dot ns | GB/s | rows ns | cols4 ns/col | to_float ns | repack ns | "
                 "tile ns/token | B* tile |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        sg = {r["sgemm_b"]: r for r in rows if "sgemm_b" in r}
        for r in rows:
            if "type" not in r:
                continue
            dot = r.get("vec_dot_ns", float("nan"))
            bstar = "-"
            if "vec_dot_ns" not in r:  # an interleaved layout: whole-group kernels only
                pass
            elif "tile_ns" in r:
                gain = dot - r["tile_ns"]
                bstar = f"{r['repack_ns'] / gain:.1f}" if gain > 0 else "never"
            elif r["type"] in ("f32", "f16", "bf16"):
                paying = [b for b in sorted(sg) if r["to_float_ns"] / b + sg[b]["ns"] < dot]
                bstar = f"sgemm ≥ {paying[0]}" if paying else "sgemm never"
            L.append(f"| {r['type']} | {dot:.1f} | {r.get('vec_dot_gbs', float('nan')):.1f} | "
                     f"{r.get('rows_ns', float('nan')):.1f} | "
                     f"{r.get('cols4_ns', float('nan')):.2f} | "
                     f"{r.get('to_float_ns', float('nan')):.0f} | "
                     f"{r.get('repack_ns', float('nan')):.0f} | "
                     f"{r.get('tile_ns', float('nan')):.2f} | {bstar} |".replace("nan", "-"))
        L.append("")
        L.append("| sgemm batch | GFLOP/s | ns per 256 weights per token |")
        L.append("|---|---|---|")
        for b in sorted(sg):
            L.append(f"| {b} | {sg[b]['gflops']:.1f} | {sg[b]['ns']:.1f} |")
        L.append("")
    if stream:
        L.append(f"### Streaming from memory (`{build}/bench-kernels -t TYPES -n N -m "
                 f"{args.stream_mib} -R 7 [-c 4]`)\n")
        L.append(f"One thread, a {args.stream_mib} MiB matrix in 2 MiB pages read by vec_dot_rows "
                 "in blocks of 64 rows, each pass right after a plain read pass (AVX2 loads) over "
                 "the same bytes, wall clock, 7 rounds: the median (min–max) of kernel GB/s ÷ "
                 "read GB/s, the share of one core's read rate the kernel keeps while it "
                 "computes. 4 columns (`-c 4`): a separate run, vec_dot_cols with four activation "
                 "rows over blocks of eight weight rows, as batched decode of four sequences "
                 "reads the weights.\n")
        L.append("| type | row length | read GB/s (mean) | kernel GB/s (mean) | kernel ÷ read | "
                 "4 columns GB/s (mean) | 4 columns ÷ read |")
        L.append("|---|---|---|---|---|---|---|")
        for r in stream:
            c = cols4.get((r["type"], r["in"]))
            c4 = (f"{c['rows_gbs_mean']:.1f} | {c['ratio_median']:.2f} "
                  f"({c['ratio_min']:.2f}–{c['ratio_max']:.2f})") if c else "- | -"
            L.append(f"| {r['type']} | {r['in']} | {r['read_gbs_mean']:.1f} | "
                     f"{r['rows_gbs_mean']:.1f} | {r['ratio_median']:.2f} "
                     f"({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | {c4} |")
        L.append("")
    if attn:
        L.append(f"### Attention of one head (`{build}/bench-kernels -a`)\n")
        L.append("One query head over n cached positions of fp16 keys and values, the kernel of "
                 "each SIMD level (the AVX-512 levels share theirs): ns per position. In cache: "
                 "one head again and again, thread CPU time. From memory: a 256 MiB cache of "
                 "heads read one after the other, wall clock, as decode reads every head's rows "
                 "once per token.\n")
        L.append("| kernel level | head size | positions | in cache ns/position | "
                 "from memory ns/position |")
        L.append("|---|---|---|---|---|")
        for r in attn:
            L.append(f"| {r['attn']} | {r['hd']} | {r['n']} | {r['cache_ns']:.2f} | "
                     f"{r['memory_ns']:.2f} |")
        L.append("")
    replace_section(args.out, SECTION, "\n".join(L))
    print(f"wrote the '{SECTION}' section of {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
