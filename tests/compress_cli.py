#!/usr/bin/python3
"""`edgellm compress` and `edgellm perplexity --kld-base` from the command line (make
test-compress), on small generated models:

- compress prints its summary (file, bits per weight, predicted/measured KL, time and peak RSS,
  report paths); the file has the size it reports;
- the report: PREFIX.json parses, has one entry per layer plus token_embd and output, one per
  weight matrix, and agrees with the summary; PREFIX.svg is well-formed SVG;
- the progress bar: nothing on stderr when stderr is not a terminal; on a terminal it shows
  (and -q silences it);
- --target-size below the smallest reachable file: exit 1, a one-line error naming the smallest
  reachable size, no output file, no temporary or staged file; an unwritable report path is
  refused the same way before any work;
- F16 and Q8_0 input models compress too (not only F32);
- --sparsity auto: reported as measured and not applied;
- perplexity --kld-base: a model against itself has KL divergence 0 and top-1 agreement 1 (same
  PPL as without --kld-base); a compressed copy has KL divergence > 0; --json carries the same
  figures; a model with another vocabulary is refused.

Binaries come from $BUILD (default build). Run with /usr/bin/python3.
"""

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
EDGELLM = os.path.join(BUILD, "edgellm")
GENMODEL = os.path.join(BUILD, "genmodel")
TEXT = os.path.join(ROOT, "models", "heldout.txt")
N_LAYER = 2
SHAPE = ["--arch", "llama", "--n-embd", "256", "--n-layer", str(N_LAYER), "--n-head", "4",
         "--n-head-kv", "2", "--n-ff", "512", "--n-vocab", "512", "--ctx", "256"]
FAST = ["--calib-tokens", "1024", "--kl-tokens", "256", "--chunk", "128", "-t", "2"]
PPL = ["-f", TEXT, "-c", "128", "--chunks", "4", "-t", "2"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def run(args, **kw):
    return subprocess.run(args, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, **kw)


def gen(path, typ, seed, extra=()):
    subprocess.run([GENMODEL] + SHAPE + ["--type", typ, "--seed", str(seed), *extra, "-o", path],
                   check=True, stdout=subprocess.DEVNULL)
    return path


def compress(inp, out, *args):
    return run([EDGELLM, "compress", "-m", inp, "-o", out, *FAST, *args])


def leftovers(d, keep):
    return sorted(f for f in os.listdir(d) if f not in keep)


def parse_summary(stdout):
    m = re.search(r"^wrote (.+): (\d+) bytes, ([\d.]+) bits per weight$", stdout, re.M)
    k = re.search(r"^KL divergence to the input: (?:predicted ([\d.]+), )?measured ([\d.]+)$",
                  stdout, re.M)
    t = re.search(r"^time ([\d.]+) s, peak RSS ([\d.]+) MiB$", stdout, re.M)
    return m, k, t


def test_summary_and_report(d, f32):
    out, prefix = os.path.join(d, "luc.gguf"), os.path.join(d, "rep")
    r = compress(f32, out, "--target-bpw", "4.5", "--report", prefix)
    if not check(r.returncode == 0, f"compress --target-bpw 4.5: rc {r.returncode} {r.stderr}"):
        return None
    check(r.stderr == "", f"stderr is not a terminal, yet compress wrote to it: {r.stderr!r}")
    m, k, t = parse_summary(r.stdout)
    check(m and k and t, f"summary lines missing:\n{r.stdout}")
    check(f"report: {prefix}.json, {prefix}.svg" in r.stdout, "no report line")
    if not (m and k and t):
        return out
    size, bpw = int(m.group(2)), float(m.group(3))
    check(m.group(1) == out, f"summary names {m.group(1)}")
    check(os.path.getsize(out) == size, f"file has {os.path.getsize(out)} bytes, summary {size}")
    check(3.5 < bpw <= 4.5, f"bits per weight {bpw} for a 4.5 target")
    check(k.group(1) is not None and float(k.group(2)) > 0, f"KL line: {k.group(0)}")
    check(float(t.group(2)) > 0, "peak RSS 0")

    with open(prefix + ".json") as f:
        rep = json.load(f)
    layers = rep.get("layers", [])
    check([x["layer"] for x in layers] == list(range(N_LAYER)) + ["token_embd", "output"],
          f"report layers: {[x.get('layer') for x in layers]}")
    check(all(isinstance(x["bpw"], (int, float)) and x["bpw"] > 0 for x in layers),
          "a layer without bits per weight")
    check(all(isinstance(x["sensitivity"], (int, float)) for x in layers[:N_LAYER]),
          "a block without sensitivity")
    tensors = rep.get("tensors", [])
    check(len(tensors) == 7 * N_LAYER + 2, f"{len(tensors)} tensors in the report")
    for x in tensors:
        check(x["chosen"] in [c["type"] for c in x["candidates"]], f"{x['name']}: chosen type "
              "not among its candidates")
    check(rep["file_bytes"] == size, "report and summary disagree on the size")
    check(abs(rep["measured_kld"] - float(k.group(2))) <= 1e-6 + 1e-5 * rep["measured_kld"],
          "report and summary disagree on the measured KL")
    check(rep["seconds"] > 0 and rep["peak_rss_bytes"] > 0, "no time or peak RSS in the report")
    check(sum(x["bytes"] for x in tensors) <= size, "tensor bytes exceed the file")

    try:
        root = ET.parse(prefix + ".svg").getroot()
        check(root.tag == "{http://www.w3.org/2000/svg}svg", f"SVG root is {root.tag}")
        bars = root.findall("{http://www.w3.org/2000/svg}rect")
        check(len(bars) >= N_LAYER + 2, f"{len(bars)} rects in the plot")
    except ET.ParseError as e:
        check(False, f"SVG is not well-formed XML: {e}")
    check(leftovers(d, {"f32.gguf", "luc.gguf", "rep.json", "rep.svg"}) == [],
          f"files left: {leftovers(d, {'f32.gguf', 'luc.gguf', 'rep.json', 'rep.svg'})}")
    return out


def stderr_on_terminal(args):
    """Runs args with stderr on a pseudo-terminal; returns (rc, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    got = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            got += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(), got.decode(errors="replace")


def test_progress(d, f32):
    out = os.path.join(d, "tty.gguf")
    rc, tty = stderr_on_terminal([EDGELLM, "compress", "-m", f32, "-o", out, *FAST,
                                  "--uniform", "q8_0"])
    check(rc == 0, f"compress with a terminal: rc {rc}")
    check("calibrating" in tty and "ETA" in tty, f"no progress bar on a terminal: {tty!r}")
    rc, tty = stderr_on_terminal([EDGELLM, "compress", "-m", f32, "-o", out, *FAST,
                                  "--uniform", "q8_0", "-q"])
    check(rc == 0 and tty == "", f"-q on a terminal: rc {rc}, {tty!r}")
    os.unlink(out)


def test_too_small(d, f32):
    before = sorted(os.listdir(d))
    out = os.path.join(d, "small.gguf")
    r = compress(f32, out, "--target-size", "100000")
    check(r.returncode == 1, f"--target-size 100000: rc {r.returncode}")
    err = r.stderr.strip()
    check(len(err.splitlines()) == 1 and re.search(
        r"a file of 100000 bytes is not reachable: the smallest reachable is about \d+ bytes", err),
        f"--target-size 100000: {err!r}")
    check(r.stdout == "", f"stdout on failure: {r.stdout!r}")
    check(sorted(os.listdir(d)) == before,
          f"files left after a failure: {sorted(set(os.listdir(d)) - set(before))}")
    # the size named is reachable
    m = re.search(r"about (\d+) bytes", err)
    if m:
        r = compress(f32, out, "--target-size", str(int(int(m.group(1)) * 1.02)))
        check(r.returncode == 0, f"the smallest reachable size is not reachable: {r.stderr}")
        if r.returncode == 0:
            os.unlink(out)
    r = compress(f32, out, "--target-bpw", "4", "--report", os.path.join(d, "no", "such", "rep"))
    check(r.returncode == 1 and "rep.json: cannot write the report" in r.stderr,
          f"unwritable report: rc {r.returncode}, {r.stderr!r}")
    check(sorted(os.listdir(d)) == before, "files left after a refused report path")


def test_input_types(d):
    for typ in ("f16", "q8_0"):
        inp = gen(os.path.join(d, f"{typ}.gguf"), typ, 32)
        out = os.path.join(d, f"{typ}-luc.gguf")
        r = compress(inp, out, "--target-bpw", "4.5")
        if not check(r.returncode == 0, f"{typ} input: rc {r.returncode} {r.stderr}"):
            continue
        m, k, _ = parse_summary(r.stdout)
        check(m and k and 0 < float(k.group(2)) < 1, f"{typ} input: summary {r.stdout!r}")
        info = run([EDGELLM, "info", out])
        check(info.returncode == 0, f"{typ} input: output does not load: {info.stderr}")
        os.unlink(out)
        os.unlink(inp)


def test_sparsity(d, f32):
    out, prefix = os.path.join(d, "sp.gguf"), os.path.join(d, "sp")
    r = compress(f32, out, "--target-bpw", "4", "--sparsity", "auto", "--report", prefix)
    if not check(r.returncode == 0, f"--sparsity auto: {r.stderr}"):
        return
    check("sparsity: measured only, not applied (no sparse storage format with its own kernels"
          in r.stdout, f"--sparsity auto summary: {r.stdout}")
    check(len(re.findall(r"^sparsity: .* has [\d.]+x the error of the dense formats", r.stdout,
                         re.M)) == 2, "no measured figures for 2:4 and 50%")
    with open(prefix + ".json") as f:
        sp = json.load(f)["sparsity"]
    check(sp["used"] is False and "no sparse storage format" in sp["why"]
          and "Wanda" in sp["measured"], f"report sparsity: {sp.get('why')!r}")
    check([x["name"] for x in sp["formats"]] == ["2:4", "unstructured-50%"],
          "sparse formats in the report")
    for x in sp["formats"]:
        check(len(x["tensors"]) == 7 * N_LAYER + 2 and x["median_error_ratio"] > 0,
              f"{x['name']}: per-tensor figures")
    h = " ".join(run([EDGELLM, "compress", "--help"]).stdout.split())
    check("offers sparse" not in h and "pruning is never applied" in h
          and "no sparse storage format with its own kernels" in h, "compress --help on sparsity")
    for f in ("sp.gguf", "sp.json", "sp.svg"):
        os.unlink(os.path.join(d, f))


def perplexity(model, *args):
    return run([EDGELLM, "perplexity", "-m", model, *PPL, *args])


def kld_lines(stdout):
    k = re.search(r"^KL divergence to the base: mean ([\d.]+), p99 ([\d.]+) \(nats, (\d+) "
                  r"positions\)$", stdout, re.M)
    t = re.search(r"^top-1 agreement with the base: ([\d.]+)$", stdout, re.M)
    return k, t


def test_kld(d, f32, luc):
    plain = perplexity(f32)
    same = perplexity(f32, "--kld-base", f32)
    if not check(plain.returncode == 0 and same.returncode == 0,
                 f"perplexity: {plain.stderr} {same.stderr}"):
        return
    last = same.stdout.strip().splitlines()[-1]
    check(re.fullmatch(r"PPL = [\d.]+", last), f"last line is {last!r}")
    check(last == plain.stdout.strip().splitlines()[-1], "--kld-base changed the perplexity")
    k, t = kld_lines(same.stdout)
    if check(k and t, f"no KL lines:\n{same.stdout}"):
        check(float(k.group(1)) == 0 and float(k.group(2)) == 0, f"self KL: {k.group(0)}")
        check(int(k.group(3)) == 4 * 63, f"positions {k.group(3)}, expected 4 chunks x 63")
        check(float(t.group(1)) == 1.0, f"self top-1: {t.group(0)}")
        out_lines = same.stdout.strip().splitlines()
        check(out_lines.index(k.group(0)) < len(out_lines) - 1, "KL after the PPL line")

    if luc:
        r = perplexity(luc, "--kld-base", f32)
        k, t = kld_lines(r.stdout)
        if check(r.returncode == 0 and k and t, f"compressed vs base: {r.stdout} {r.stderr}"):
            mean, p99, top1 = float(k.group(1)), float(k.group(2)), float(t.group(1))
            check(mean > 0 and p99 >= mean, f"compressed: mean {mean}, p99 {p99}")
            check(0 < top1 < 1.0 or top1 == 1.0, f"compressed: top-1 {top1}")
            check(r.stdout.strip().splitlines()[-1].startswith("PPL = "), "PPL not last")
        j = perplexity(luc, "--kld-base", f32, "--json")
        try:
            o = json.loads(j.stdout)
            check(abs(o["kld"]["mean"] - mean) <= 1e-6 + 1e-5 * mean, "--json KL differs")
            check(o["kld"]["positions"] == o["scored_tokens"] == 4 * 63, "--json positions")
            check(abs(o["ppl"] - float(r.stdout.strip().split()[-1])) < 1e-3 * o["ppl"],
                  "--json PPL differs")
        except (ValueError, KeyError, NameError) as e:
            check(False, f"--json: {e}: {j.stdout!r}")

    other = gen(os.path.join(d, "v600.gguf"), "f32", 5, ["--n-vocab", "600"])
    r = perplexity(f32, "--kld-base", other)
    check(r.returncode == 1 and "same vocabulary" in r.stderr and len(r.stderr.splitlines()) == 1
          and r.stdout == "", f"other vocabulary: rc {r.returncode}, {r.stderr!r}")
    os.unlink(other)


def main():
    for b in (EDGELLM, GENMODEL):
        if not os.access(b, os.X_OK):
            sys.exit(f"test-compress: {b} missing (make BUILD=... all)")
    d = tempfile.mkdtemp(prefix="edgellm-compress-")
    try:
        f32 = gen(os.path.join(d, "f32.gguf"), "f32", 31)
        luc = test_summary_and_report(d, f32)
        test_kld(d, f32, luc)
        for f in ("luc.gguf", "rep.json", "rep.svg"):
            if os.path.exists(os.path.join(d, f)):
                os.unlink(os.path.join(d, f))
        test_too_small(d, f32)
        test_progress(d, f32)
        test_input_types(d)
        test_sparsity(d, f32)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print(f"test-compress: {len(failures)} failure(s)")
        sys.exit(1)
    print("test-compress: compress and perplexity --kld-base behave")


if __name__ == "__main__":
    main()
