"""The engine's block formats against the independent numpy implementation
(tools/reference/quants.py), through the filter tests/formats/quants_io.c.

For each of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS:

  dequantize  Random blocks: every byte random except the fp16 fields, which get random finite
              values (random sign and mantissa, exponents from zero/subnormal up to 2^4, so no
              inf or NaN). The engine's to_float equals numpy's values bit for bit (float32 bit
              patterns, so even the sign of a zero counts): both compute each value with the
              same float32 operations in the same order, so no tolerance is needed.
  quantize    Rows that hit the quantizers' corners (zeros of either sign, constant rows, a huge
              outlier of either sign, blocks whose largest magnitude is negative or tied between
              +a and -a, values landing exactly on rounding halves, scales that are fp16
              subnormals, groups below the k-quants' 1e-15 cutoff, sub-blocks of very different
              magnitudes, small integers) plus random rows of several distributions and scales.
              The engine's from_float bytes equal numpy's byte for byte. For Q8_0, Q4_0, Q4_1,
              Q5_0 and Q5_1 numpy follows ggml's reference quantizers; for the k-quants and the
              IQ4 formats it emulates their reference searches in float32 with sums taken in
              the same order.
  round trip  A unit gaussian row of 16384 values quantized by the engine: numpy's dequantization
              of those bytes equals the engine's own to_float bit for bit, and the relative RMS
              error lies within the bounds of tests/check_quants.c (round_trip_error_bounds).

Dequantized values and quantized bytes are taken twice from the engine: from its scalar reference
kernels and from the table it runs with (SIMD kernels for this CPU, which must agree exactly).

usage: /usr/bin/python3 tests/formats/run.py [QUANTS_IO] [-k FORMAT]
QUANTS_IO defaults to $BUILD/tests/quants_io (BUILD defaults to build). Prints one line per check
and exits 1 if any fails.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

import quants  # noqa: E402

F32 = np.float32
SEED = 20250401
DEQUANT_ELEMENTS = 1 << 18  # per format: 8192 blocks of 32 or 1024 super-blocks
ROUND_TRIP_N = 16384

# Relative RMS error bounds of quantize -> dequantize on a unit gaussian row of 16384 values,
# the same as tests/check_quants.c's (measured there with about 25% margin on its own gaussian
# row; a different row of this length moves the figure by about 1%). The error must also be
# above a third of the bound: a quantizer far better than its format allows is not the format.
ROUND_TRIP_BOUNDS = {
    "q4_0": 0.11,
    "q4_1": 0.10,
    "q5_0": 0.055,
    "q5_1": 0.048,
    "q8_0": 7e-3,
    "q2_k": 0.36,
    "q3_k": 0.19,
    "q4_k": 0.09,
    "q5_k": 0.046,
    "q6_k": 0.023,
    "iq4_nl": 0.10,
    "iq4_xs": 0.096,
}


class Engine:
    def __init__(self, tool):
        self.tool = tool

    def run(self, op, fmt, data, active):
        cmd = [self.tool] + (["--active"] if active else []) + [op, fmt]
        r = subprocess.run(cmd, input=data, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode().strip()}")
        return r.stdout

    def dequantize(self, fmt, raw, active=False):
        return np.frombuffer(self.run("dequantize", fmt, raw.tobytes(), active), F32)

    def quantize(self, fmt, x, active=False):
        out = self.run("quantize", fmt, np.asarray(x, F32).tobytes(), active)
        return np.frombuffer(out, np.uint8)


# ---------------------------------------------------------------------------------------------
# Inputs


def random_blocks(f, n_blocks, rng):
    raw = rng.integers(0, 256, size=(n_blocks, f.type_size), dtype=np.uint8)
    for off in f.halves:
        sign = rng.integers(0, 2, n_blocks) << 15
        exponent = rng.integers(0, 20, n_blocks) << 10  # 0 = zero/subnormal ... 19 = 2^4
        mantissa = rng.integers(0, 1024, n_blocks)
        h = (sign | exponent | mantissa).astype("<u2")
        raw[:, off : off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def quantizer_rows(rng):
    """(name, 256 float32 values) pairs: one super-block, or eight blocks of 32, each."""
    n = 256

    def gauss(scale=1.0):
        return rng.standard_normal(n) * scale

    rows = [
        ("zeros", np.zeros(n)),
        ("negative zeros", np.full(n, -0.0)),
        ("zeros of both signs", np.where(rng.random(n) < 0.5, 0.0, -0.0)),
        ("constant 0.7", np.full(n, 0.7)),
        ("constant -1.3", np.full(n, -1.3)),
        ("one nonzero", np.where(np.arange(n) == 77, 0.3, 0.0)),
        ("positive only", np.abs(gauss()) + 0.1),
        ("negative only", -np.abs(gauss()) - 0.1),
        ("small integers", rng.integers(-3, 4, n).astype(float)),
        ("fp16-subnormal scales", gauss(1e-5)),
        ("scales flushed to zero", gauss(1e-7)),
        ("below the 1e-15 cutoff", gauss(1e-17)),
    ]
    x = gauss()
    x[37] = 6e4
    rows.append(("huge outlier", x))
    x = gauss()
    x[200] = -3e4
    rows.append(("huge negative outlier", x))

    # every block of 32 (and sub-block of 16) has its largest magnitude negative
    x = rng.uniform(-1, 1, n)
    for b in range(0, n, 16):
        x[b + rng.integers(16)] = -rng.uniform(1.5, 3)
    rows.append(("negative maxima", x))

    # +a and -a both reach the largest magnitude: the first one decides the scale's sign
    x = rng.uniform(-1, 1, n)
    for b in range(0, n, 16):
        i, j = rng.choice(16, 2, replace=False)
        x[b + i], x[b + j] = 2.0, -2.0
    rows.append(("tied +-maxima", x))

    # scale exactly 1, so x * (1/d) is x itself: q8_0 with amax 127 sees halves (roundf goes away
    # from zero); q4_0 / q5_0 with a maximum of -8 / -16 see x + 8.5 / 16.5 on integers and halves
    for top, rest in [
        (127.0, np.arange(-15.5, 15.0, 1.0)),
        (-8.0, np.arange(-7.5, 7.6, 0.5)),
        (-16.0, np.arange(-15.5, 15.0, 1.0)),
    ]:
        rows.append((f"scale 1, max {top:g}", np.tile(np.concatenate([[top], rest]), n // 32)))

    # fp16 rounding ties: q4_0 / q5_0 store max/-8 and max/-16, q4_1 / q5_1 store the minimum,
    # all exactly; make those values fall halfway between two fp16 numbers (normal and
    # subnormal, with even and odd neighbours below), so round-to-nearest-even decides
    m = rng.integers(0, 1024, 8 * 4)
    e = rng.integers(-14, 5, 8 * 4).astype(float)
    normal = (1 + m / 1024 + 1 / 2048) * 2.0**e
    subnormal = (rng.integers(0, 1024, 8 * 4) + 0.5) * 2.0**-24
    for ties, name in [(normal, "fp16 ties"), (subnormal, "fp16 subnormal ties")]:
        for k in (8, 16):
            x = rng.uniform(-0.5, 0.5, n) * ties.repeat(8)[:n]
            x[0::32] = -k * ties[: n // 32]  # the largest magnitude, and the minimum
            rows.append((f"{name}, max -{k}*tie", x))

    # sub-blocks of 16 whose magnitudes differ by up to 10^7: small sub-block scales quantize to 0
    magnitudes = np.repeat(10.0 ** rng.integers(-4, 4, 16), 16)
    rows.append(("mixed sub-block magnitudes", gauss() * magnitudes))

    for i in range(256):
        rows.append((f"gaussian #{i}", gauss(10.0 ** rng.uniform(-3, 2))))
    for i in range(64):
        rows.append((f"student-t(3) #{i}", rng.standard_t(3, n)))
    for i in range(32):
        rows.append((f"uniform #{i}", rng.uniform(-1, 1, n) + rng.uniform(-1, 1)))
    return [(name, np.asarray(v, F32)) for name, v in rows]


def gaussian_row(n, seed):
    return np.random.default_rng(seed).standard_normal(n).astype(F32)


# ---------------------------------------------------------------------------------------------
# Comparisons (each returns None if equal, else a message)


def compare_floats(want, got, block_size):
    if want.shape != got.shape:
        return f"{got.size} values, expected {want.size}"
    bad = np.nonzero(want.view(np.uint32) != got.view(np.uint32))[0]
    if bad.size == 0:
        return None
    i = bad[0]
    return (
        f"{bad.size} of {want.size} values differ; first at element {i} (block {i // block_size}, "
        f"index {i % block_size}): engine {got[i]!r} (0x{got.view(np.uint32)[i]:08x}), "
        f"numpy {want[i]!r} (0x{want.view(np.uint32)[i]:08x})"
    )


def compare_bytes(f, want, got, names=None):
    if want.shape != got.shape:
        return f"{got.size} bytes, expected {want.size}"
    w, g = want.reshape(-1, f.type_size), got.reshape(-1, f.type_size)
    bad_blocks = np.nonzero((w != g).any(axis=1))[0]
    if bad_blocks.size == 0:
        return None
    b = bad_blocks[0]
    offs = np.nonzero(w[b] != g[b])[0]
    where = f" (row {names[b]!r})" if names is not None else ""
    return (
        f"{bad_blocks.size} of {w.shape[0]} blocks differ; first: block {b}{where}, bytes at "
        f"offsets {offs[:12].tolist()}{'...' if offs.size > 12 else ''}\n"
        f"      engine {g[b].tobytes().hex()}\n      numpy  {w[b].tobytes().hex()}"
    )


# ---------------------------------------------------------------------------------------------
# Checks


class Report:
    def __init__(self):
        self.failed = 0

    def check(self, what, message):
        if message is None:
            print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}: {message}")


def check_dequantize(engine, f, rng, report):
    raw = random_blocks(f, DEQUANT_ELEMENTS // f.block_size, rng)
    want = quants.dequantize(f.name, raw)
    for active in (False, True):
        got = engine.dequantize(f.name, raw, active)
        kernels = "active table" if active else "reference"
        report.check(
            f"{f.name:6s} dequantize {raw.size // f.type_size} random blocks ({kernels})",
            compare_floats(want, got, f.block_size),
        )


def check_quantize(engine, f, rows, report):
    x = np.concatenate([v for _, v in rows])
    names = [name for name, _ in rows for _ in range(256 // f.block_size)]
    want = quants.quantize(f.name, x)
    for active in (False, True):
        got = engine.quantize(f.name, x, active)
        kernels = "active table" if active else "reference"
        report.check(
            f"{f.name:6s} quantize {len(rows)} rows, bytes ({kernels})",
            compare_bytes(f, want, got, names),
        )
    # and back: the quantized corner rows give finite values that numpy reads the same way
    got = engine.quantize(f.name, x)
    y_engine = engine.dequantize(f.name, got)
    msg = compare_floats(quants.dequantize(f.name, got), y_engine, f.block_size)
    if msg is None and not np.all(np.isfinite(y_engine)):
        msg = "non-finite values from finite, fp16-representable input"
    report.check(f"{f.name:6s} quantize {len(rows)} rows, dequantized", msg)


def check_round_trip(engine, f, x, report):
    q = engine.quantize(f.name, x)
    y_engine = engine.dequantize(f.name, q)
    msg = compare_floats(quants.dequantize(f.name, q), y_engine, f.block_size)
    x64, y64 = x.astype(np.float64), y_engine.astype(np.float64)
    rel = float(np.sqrt(np.sum((x64 - y64) ** 2) / np.sum(x64**2)))
    bound = ROUND_TRIP_BOUNDS[f.name]
    if msg is None and not (bound / 3 < rel <= bound):
        msg = f"relative rmse {rel:.5f} outside ({bound / 3:.5f}, {bound}]"
    report.check(f"{f.name:6s} round trip of a gaussian row: rel rmse {rel:.5f} <= {bound}", msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    build = os.environ.get("BUILD", "build")
    ap.add_argument("quants_io", nargs="?", default=os.path.join(ROOT, build, "tests", "quants_io"))
    ap.add_argument("-k", dest="only", help="only formats whose name contains this")
    args = ap.parse_args()
    engine = Engine(args.quants_io)
    report = Report()
    t0 = time.monotonic()
    rng = np.random.default_rng(SEED)
    rows = quantizer_rows(rng)
    x = gaussian_row(ROUND_TRIP_N, SEED + 1)
    for name, f in quants.FORMATS.items():
        if args.only and args.only not in name:
            continue
        check_dequantize(engine, f, rng, report)
        check_quantize(engine, f, rows, report)
        check_round_trip(engine, f, x, report)
    dt = time.monotonic() - t0
    if report.failed:
        print(f"test-formats: {report.failed} check(s) FAILED ({dt:.1f} s)")
        return 1
    print(f"test-formats: all checks passed ({dt:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
