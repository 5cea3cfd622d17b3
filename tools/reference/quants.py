"""The ggml block formats in numpy, written from the format definitions: dequantization of
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS, and quantization
to each of them the way the formats' reference quantizers do it.

Owns: each format's block layout (field order and byte offsets, nibble and bit order, the packing
of the k-quants' sub-block scales, the IQ4 level table), dequantization of many blocks at once, and
quantization of float32 rows.

Deliberately does not: share code or tables with the engine (this is the independent side of
tests/formats), read files (gguf.py does, and calls dequantize()), or quantize with importance
weights (only the plain reference algorithms exist here).

Float arithmetic is float32 throughout, in the operation order of the format definitions (q4_1:
q*d, then + m; q6_k: (d*scale)*q; ...), so results are meant to be bit-identical to a C
implementation of the same definitions compiled without fused multiply-add, not merely close.
The k-quant and IQ4 quantizers search over candidate scales and keep the best by comparing float
sums; those sums are accumulated here one element at a time in index order, because numpy's
pairwise summation rounds differently and would flip some of the decisions.

    FORMATS[name]            Format: elements per block, bytes per block, fp16 field offsets
    dequantize(name, raw)    uint8 array of whole blocks -> float32 array
    quantize(name, x)        float32 array (a multiple of the block size) -> uint8 array

Names are the lower-case GGUF ones ("q4_k"). One known divergence from ggml's iq4_nl reference:
for a block whose values are all below 1e-15 in magnitude it leaves the level indices of the
previous block in place (uninitialized for the first); here they are 0. Such a block's scale is
0 and it dequantizes to zeros either way.
"""

from dataclasses import dataclass

import numpy as np

F32 = np.float32
QK = 32  # elements per block of the 32-element formats
QK_K = 256  # elements per super-block of the k-quants and iq4_xs
GROUP_MAX_EPS = F32(1e-15)  # below this magnitude a group counts as all zeros

# The 16 non-linear levels shared by iq4_nl and iq4_xs, in increasing order.
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113])
_IQ4_LEVELS_F = IQ4_LEVELS.astype(F32)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _half(b, off):
    """The fp16 field at byte offset off of every block (rows of b) as float32."""
    return np.ascontiguousarray(b[:, off : off + 2]).view("<f2")[:, 0].astype(F32)


def _half_bytes(v):
    """float32 -> fp16 encodings (round to nearest even) as (n, 2) little-endian bytes."""
    with np.errstate(over="ignore"):
        h = np.asarray(v, F32).astype("<f2")
    return h.view(np.uint8).reshape(-1, 2)


def _half_round(v):
    """float32 -> the float32 value of its fp16 encoding (what a reader of the block sees)."""
    with np.errstate(over="ignore"):
        return np.asarray(v, F32).astype("<f2").astype(F32)


def _low_high(qs):
    """Bytes holding two 4-bit values -> all low nibbles, then all high nibbles (last axis)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _nearest_int(v):
    """Round to nearest, ties to even, by the formats' float trick: add 1.5 * 2^23 in float32 and
    read the low mantissa bits. Exact for |v| < 2^22; beyond, it gives what the trick gives."""
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.asarray(v, F32) + F32(12582912.0)
    return ((t.view(np.int32) & 0x007FFFFF) - 0x00400000).astype(np.int64)


def _round_half_away(v):
    """C roundf of float32 values (halves away from zero); float64 holds v + 0.5 exactly."""
    v64 = np.asarray(v, F32).astype(np.float64)
    return np.trunc(v64 + np.copysign(0.5, v64)).astype(np.int64)


def _recip(v):
    """1/v in float32 where v != 0, else 0."""
    v = np.asarray(v, F32)
    with np.errstate(divide="ignore"):
        return np.where(v != 0, F32(1) / v, F32(0)).astype(F32)


def _as_int8(v):
    """What storing an int in an int8_t keeps (two's complement wrap)."""
    return ((np.asarray(v, np.int64) + 128) & 0xFF) - 128


def _seq_sum(terms, from_first=False):
    """Sum along the last axis in float32, one element at a time in index order, starting from 0
    (or from the first element when from_first)."""
    terms = np.asarray(terms, F32)
    n = terms.shape[-1]
    if from_first:
        s = terms[..., 0].copy()
        start = 1
    else:
        s = np.zeros(terms.shape[:-1], F32)
        start = 0
    for i in range(start, n):
        s += terms[..., i]
    return s


def _first_absmax(x):
    """Per row (last axis): the largest |x| and the first element reaching it, with its sign
    (a scan that replaces only on a strictly larger |x|, starting from 0)."""
    a = np.abs(x)
    i = np.argmax(a, axis=-1)[..., None]
    amax = np.take_along_axis(a, i, -1)[..., 0]
    vmax = np.take_along_axis(x, i, -1)[..., 0]
    return amax, np.where(amax > 0, vmax, F32(0)).astype(F32)


def _first_min_max(x):
    """Per row: the minimum and maximum as a scan with strict comparisons keeps them (the first
    element among equals, which decides the sign of a zero)."""
    mn = np.take_along_axis(x, np.argmin(x, axis=-1)[..., None], -1)[..., 0]
    mx = np.take_along_axis(x, np.argmax(x, axis=-1)[..., None], -1)[..., 0]
    return mn, mx


def _positive_max(v):
    """max(0, max over the last axis) as a scan from 0 that replaces on strictly larger values."""
    m = v.max(axis=-1)
    return np.where(m > 0, m, F32(0)).astype(F32)


def _iq4_index(v):
    """Index of the IQ4 level nearest to each value: below the first or above the last level the
    end index; between two levels the lower one only if strictly nearer."""
    v = np.asarray(v, F32)
    lv = _IQ4_LEVELS_F
    hi = np.clip(np.searchsorted(lv, v, side="right"), 1, 15)
    with np.errstate(invalid="ignore"):
        idx = np.where(v - lv[hi - 1] < lv[hi] - v, hi - 1, hi)
        idx = np.where(v <= lv[0], 0, np.where(v >= lv[15], 15, idx))
    return idx.astype(np.int64)


def _pack_2bit(L):
    """256 two-bit values per block -> 64 bytes: byte 32*h + l holds elements 128*h + 32*j + l
    (j = 0..3) at bits 2*j."""
    L = np.asarray(L, np.int64).reshape(-1, 2, 4, 32)
    shifts = (2 * np.arange(4)).reshape(1, 1, 4, 1)
    return (L << shifts).sum(axis=2).reshape(-1, 64).astype(np.uint8)


def _unpack_2bit(qs):
    """Inverse of _pack_2bit: (nb, 64) bytes -> (nb, 256) values 0..3."""
    q = qs.reshape(-1, 2, 1, 32).astype(np.int64)
    shifts = (2 * np.arange(4)).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, 256)


def _bit_planes(bits, n_planes):
    """(nb, 32) bytes -> (nb, 32 * n_planes): element 32*p + l is bit p of byte l."""
    planes = np.arange(n_planes).reshape(1, n_planes, 1)
    return ((bits.astype(np.int64)[:, None, :] >> planes) & 1).reshape(bits.shape[0], -1)


def _per(v, n):
    """Repeat each sub-block value n times along the last axis (one per element)."""
    return np.repeat(v, n, axis=-1)


# ---------------------------------------------------------------------------------------------
# The k-quants' 12-byte scale fields

# q4_k / q5_k: 8 six-bit scales and 8 six-bit mins. Bytes 0-3 hold scales 0-3 in their low six
# bits, bytes 4-7 mins 0-3; bytes 8-11 hold scale 4+i (low nibble) and min 4+i (high nibble) with
# their top two bits in the top two bits of bytes i (scale) and 4+i (min).


def _k4_unpack(s):
    s = s.astype(np.int64)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, mn


def _k4_pack(sc, mn):
    sc = np.asarray(sc, np.int64)
    mn = np.asarray(mn, np.int64)
    s = np.zeros((sc.shape[0], 12), np.int64)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    return s.astype(np.uint8)


# q3_k: 16 six-bit scales stored +32. Read as three little-endian 32-bit words w0, w1, w2: the low
# nibbles of w0's bytes are scales 0-3, of w1's 4-7; the high nibbles of w0's 8-11, of w1's 12-15;
# the two high bits of scale 4*k + i sit at bits 2*k of byte i of w2.


def _q3k_unpack(s):
    w = np.ascontiguousarray(s).view("<u4").astype(np.int64)
    w0, w1, w2 = w[:, 0], w[:, 1], w[:, 2]
    nib, two = 0x0F0F0F0F, 0x03030303
    words = np.stack(
        [
            (w0 & nib) | ((w2 & two) << 4),
            (w1 & nib) | (((w2 >> 2) & two) << 4),
            ((w0 >> 4) & nib) | (((w2 >> 4) & two) << 4),
            ((w1 >> 4) & nib) | (((w2 >> 6) & two) << 4),
        ],
        axis=1,
    ).astype("<u4")
    return words.view(np.uint8).reshape(-1, 16).astype(np.int64) - 32


def _q3k_pack(ls):
    """16 stored scales (0..63, i.e. scale + 32) -> the 12 bytes."""
    ls = np.asarray(ls, np.int64)
    s = np.zeros((ls.shape[0], 12), np.int64)
    s[:, 0:8] = (ls[:, 0:8] & 0x0F) | ((ls[:, 8:16] & 0x0F) << 4)
    for k in range(4):
        s[:, 8:12] |= (ls[:, 4 * k : 4 * k + 4] >> 4) << (2 * k)
    return s.astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Dequantization. Each takes the blocks as rows of a (n_blocks, type_size) uint8 array and returns
# (n_blocks, block_size) float32.


def _deq_q4_0(b):  # d:f16 | qs[16]: element j < 16 low nibble of qs[j], j >= 16 high nibble
    d = _half(b, 0)[:, None]
    return d * (_low_high(b[:, 2:18]).astype(F32) - F32(8))


def _deq_q4_1(b):  # d:f16 m:f16 | qs[16] as q4_0; x = q*d + m
    d, m = _half(b, 0)[:, None], _half(b, 2)[:, None]
    return _low_high(b[:, 4:20]).astype(F32) * d + m


def _q5_values(qh4, qs):
    """5-bit values: low 4 bits as q4_0, bit 4 of element j = bit j of the little-endian u32 qh."""
    qh = np.ascontiguousarray(qh4).view("<u4").astype(np.int64)  # (nb, 1)
    high = (qh >> np.arange(32)) & 1
    return _low_high(qs).astype(np.int64) | (high << 4)


def _deq_q5_0(b):  # d:f16 | qh[4] | qs[16]; x = (q - 16)*d
    d = _half(b, 0)[:, None]
    return (_q5_values(b[:, 2:6], b[:, 6:22]) - 16).astype(F32) * d


def _deq_q5_1(b):  # d:f16 m:f16 | qh[4] | qs[16]; x = q*d + m
    d, m = _half(b, 0)[:, None], _half(b, 2)[:, None]
    return _q5_values(b[:, 4:8], b[:, 8:24]).astype(F32) * d + m


def _deq_q8_0(b):  # d:f16 | qs[32] int8
    return _half(b, 0)[:, None] * b[:, 2:34].view(np.int8).astype(F32)


def _deq_q2_k(b):  # scales[16] (low nibble scale, high nibble min) | qs[64] | d:f16 | dmin:f16
    d, dmin = _half(b, 80)[:, None], _half(b, 82)[:, None]
    sc = b[:, 0:16].astype(np.int64)
    dl = d * (sc & 0x0F).astype(F32)
    ml = dmin * (sc >> 4).astype(F32)
    q = _unpack_2bit(b[:, 16:80]).astype(F32)
    return _per(dl, 16) * q - _per(ml, 16)


def _deq_q3_k(b):  # hmask[32] | qs[64] | scales[12] | d:f16; q = low2 - (high bit ? 0 : 4)
    d = _half(b, 108)[:, None]
    q = _unpack_2bit(b[:, 32:96]) - 4 * (1 - _bit_planes(b[:, 0:32], 8))
    dl = d * _q3k_unpack(b[:, 96:108]).astype(F32)
    return _per(dl, 16) * q.astype(F32)


def _k4_values(qs):
    """q4_k / q5_k low 4 bits: 32-byte group g holds sub-block 2g (low nibbles), 2g+1 (high)."""
    g = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([g & 0x0F, g >> 4], axis=2).reshape(-1, 256).astype(np.int64)


def _deq_q4_k(b):  # d:f16 dmin:f16 | scales[12] | qs[128]; x = (d*sc)*q - dmin*m per 32
    d, dmin = _half(b, 0)[:, None], _half(b, 2)[:, None]
    sc, mn = _k4_unpack(b[:, 4:16])
    q = _k4_values(b[:, 16:144]).astype(F32)
    return _per(d * sc.astype(F32), 32) * q - _per(dmin * mn.astype(F32), 32)


def _deq_q5_k(b):  # d:f16 dmin:f16 | scales[12] | qh[32]: bit s of byte l = 5th bit of 32s+l | qs
    d, dmin = _half(b, 0)[:, None], _half(b, 2)[:, None]
    sc, mn = _k4_unpack(b[:, 4:16])
    q = (_k4_values(b[:, 48:176]) + 16 * _bit_planes(b[:, 16:48], 8)).astype(F32)
    return _per(d * sc.astype(F32), 32) * q - _per(dmin * mn.astype(F32), 32)


def _deq_q6_k(b):  # ql[128] | qh[64] | scales[16] int8 | d:f16; x = (d*sc)*(q - 32) per 16
    nb = b.shape[0]
    ql = b[:, 0:128].reshape(nb, 2, 2, 32).astype(np.int64)  # half, first/second 32 bytes, l
    qh = b[:, 128:192].reshape(nb, 2, 1, 32).astype(np.int64)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2)  # groups of 32: 0, 1 low; 2, 3 high nibbles
    high = (qh >> (2 * np.arange(4)).reshape(1, 1, 4, 1)) & 3
    q = (low | (high << 4)).reshape(nb, 256) - 32
    dl = _half(b, 208)[:, None] * b[:, 192:208].view(np.int8).astype(F32)
    return _per(dl, 16) * q.astype(F32)


def _deq_iq4_nl(b):  # d:f16 | qs[16] nibbles as q4_0, indices into IQ4_LEVELS
    return _half(b, 0)[:, None] * _IQ4_LEVELS_F[_low_high(b[:, 2:18])]


def _iq4_xs_scales(b):
    """The 8 six-bit sub-block scales (stored +32): low 4 bits in scales_l (two per byte, even
    sub-block in the low nibble), high 2 bits at bits 2*ib of scales_h."""
    sh = np.ascontiguousarray(b[:, 2:4]).view("<u2").astype(np.int64)  # (nb, 1)
    sl = b[:, 4:8].astype(np.int64)
    ib = np.arange(8)
    low = (sl[:, ib // 2] >> (4 * (ib % 2))) & 0x0F
    return (low | (((sh >> (2 * ib)) & 3) << 4)) - 32


def _deq_iq4_xs(b):  # d:f16 | scales_h:u16 | scales_l[4] | qs[128]: per 32 as iq4_nl
    nb = b.shape[0]
    dl = _half(b, 0)[:, None] * _iq4_xs_scales(b).astype(F32)
    q = _low_high(b[:, 8:136].reshape(nb, 8, 16)).reshape(nb, 256)
    return _per(dl, 32) * _IQ4_LEVELS_F[q]


# ---------------------------------------------------------------------------------------------
# Quantization of the 32-element formats. Each takes (n_blocks, 32) float32 and returns
# (n_blocks, type_size) uint8.


def _scale_from_signed_max(x, levels):
    """Scale of the symmetric formats: the first value of largest magnitude, with its sign, maps
    to -levels (so the scale's sign follows that value's)."""
    _, vmax = _first_absmax(x)
    d = vmax / F32(-levels)
    return d, _recip(d)


def _qnt_q8_0(x):
    amax = np.abs(x).max(axis=1)
    d = amax / F32(127)
    q = _round_half_away(x * _recip(d)[:, None])
    return np.concatenate([_half_bytes(d), q.astype(np.int8).view(np.uint8)], axis=1)


def _qnt_q4_0(x):
    d, inv = _scale_from_signed_max(x, 8)
    q = np.minimum(15, (x * inv[:, None] + F32(8.5)).astype(np.int64))  # truncation
    qs = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([_half_bytes(d), qs.astype(np.uint8)], axis=1)


def _qnt_q4_1(x):
    mn, mx = _first_min_max(x)
    d = (mx - mn) / F32(15)
    q = np.minimum(15, ((x - mn[:, None]) * _recip(d)[:, None] + F32(0.5)).astype(np.int64))
    qs = q[:, :16] | (q[:, 16:] << 4)
    return np.concatenate([_half_bytes(d), _half_bytes(mn), qs.astype(np.uint8)], axis=1)


def _q5_pack(q):
    """32 five-bit values -> qh (4 bytes, bit j = bit 4 of element j) and qs (16 bytes)."""
    qh = (((q >> 4) & 1) << np.arange(32)).sum(axis=1).astype("<u4")
    qs = (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)
    return qh.view(np.uint8).reshape(-1, 4), qs.astype(np.uint8)


def _qnt_q5_0(x):
    d, inv = _scale_from_signed_max(x, 16)
    q = np.minimum(31, (x * inv[:, None] + F32(16.5)).astype(np.int64))
    qh, qs = _q5_pack(q)
    return np.concatenate([_half_bytes(d), qh, qs], axis=1)


def _qnt_q5_1(x):
    mn, mx = _first_min_max(x)
    d = (mx - mn) / F32(31)
    q = ((x - mn[:, None]) * _recip(d)[:, None] + F32(0.5)).astype(np.int64) & 0xFF  # no clamp
    qh, qs = _q5_pack(q)
    return np.concatenate([_half_bytes(d), _half_bytes(mn), qh, qs], axis=1)


# ---------------------------------------------------------------------------------------------
# The k-quants' sub-block fits. Each works on a (groups, n) float32 array, one group per row,
# and returns per-group results; the loops over elements keep the reference's order of float
# additions (see the module comment).


def _fit_symmetric(x, nmax):
    """Levels -nmax..nmax-1 with weights x^2: start from the scale that maps the first value of
    largest magnitude to -nmax, then try 18 neighbouring scales -(nmax + 0.1*k)/max, k = +-1..9,
    keeping a candidate whose weighted fit sum(w*x*l)^2 / sum(w*l^2) is strictly better.
    Returns (scale, L = level + nmax)."""
    amax, vmax = _first_absmax(x)
    zero = amax < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = x * x
        wx = w * x

        def levels(iscale):
            return np.clip(_nearest_int(iscale[:, None] * x), -nmax, nmax - 1)

        def sums(lv):
            lf = lv.astype(F32)
            return _seq_sum(wx * lf), _seq_sum(w * lf * lf)

        lv = levels(F32(-nmax) / vmax)
        L = lv + nmax
        sumlx, suml2 = sums(lv)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0)).astype(F32)
        best = scale * sumlx
        for k in range(-9, 10):
            if k == 0:
                continue
            lv = levels(-(F32(nmax) + F32(0.1) * F32(k)) / vmax)
            slx, sl2 = sums(lv)
            better = (sl2 > 0) & (slx * slx > best * sl2)
            L = np.where(better[:, None], lv + nmax, L)
            scale = np.where(better, slx / sl2, scale).astype(F32)
            best = np.where(better, scale * slx, best).astype(F32)
    scale = np.where(zero, F32(0), scale).astype(F32)
    return scale, np.where(zero[:, None], 0, L)


def _fit_q3(x, nmax):
    """Levels -nmax..nmax-1 with weights x^2: start from -nmax/max, then up to 5 passes over the
    elements, moving one element at a time to the level its leave-one-out fit asks for when that
    strictly improves sum(w*x*l)^2 / sum(w*l^2). Returns (scale, L = level + nmax)."""
    amax, vmax = _first_absmax(x)
    zero = amax < GROUP_MAX_EPS
    n = x.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = x * x
        wx = w * x
        lv = np.clip(_nearest_int((F32(-nmax) / vmax)[:, None] * x), -nmax, nmax - 1)
        lf = lv.astype(F32)
        sumlx, suml2 = _seq_sum(wx * lf), _seq_sum(w * lf * lf)
        # A pass that changes nothing leaves the state as it was, so the passes after it would
        # change nothing either: running all 5 equals stopping early.
        for _ in range(5):
            for i in range(n):
                li = lv[:, i].astype(F32)
                slx = sumlx - wx[:, i] * li
                sl2 = suml2 - w[:, i] * li * li
                new = np.clip(_nearest_int(x[:, i] * sl2 / slx), -nmax, nmax - 1)
                nf = new.astype(F32)
                slx_new = slx + wx[:, i] * nf
                sl2_new = sl2 + w[:, i] * nf * nf
                take = (
                    (slx > 0)
                    & (new != lv[:, i])
                    & (sl2_new > 0)
                    & (slx_new * slx_new * suml2 > sumlx * sumlx * sl2_new)
                )
                lv[:, i] = np.where(take, new, lv[:, i])
                sumlx = np.where(take, slx_new, sumlx).astype(F32)
                suml2 = np.where(take, sl2_new, suml2).astype(F32)
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0)).astype(F32)
    scale = np.where(zero, F32(0), scale).astype(F32)
    return scale, np.where(zero[:, None], 0, lv + nmax)


def _fit_affine(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """x ~ scale*L - m with L in 0..nmax and m >= 0: start from the range [min(min x, 0), max x],
    then for nstep+1 candidate inverse scales (rmin + rdelta*k + nmax)/range take the weighted
    least-squares scale and offset of their levels and keep one whose weighted error (absolute
    if use_mad, else squared) is strictly smaller. A kept candidate's offset replaces the range's
    lower end for the candidates after it. Returns (scale, L, m)."""
    mn, mx = _first_min_max(x)
    mn = np.where(mn > 0, F32(0), mn).astype(F32)
    flat = mx == mn  # all levels 0, scale 0, offset -min
    flat_offset = -mn
    w = weights
    sum_w = _seq_sum(w, from_first=True)
    sum_x = _seq_sum(w * x, from_first=True)

    def error(scale, lf, offset):
        diff = scale[:, None] * lf + offset[:, None] - x
        return _seq_sum(w * (np.abs(diff) if use_mad else diff * diff))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / (mx - mn)
        scale = F32(1) / iscale
        L = np.clip(_nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
        best = error(scale, L.astype(F32), mn)
        for k in range(nstep + 1):
            # the range and the levels start from the offset of the best candidate so far
            isc = (F32(rmin) + F32(rdelta) * F32(k) + F32(nmax)) / (mx - mn)
            la = np.clip(_nearest_int(isc[:, None] * (x - mn[:, None])), 0, nmax)
            lf = la.astype(F32)
            wl = w * lf
            sum_l, sum_l2, sum_xl = _seq_sum(wl), _seq_sum(wl * lf), _seq_sum(wl * x)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            positive = this_min > 0
            this_min = np.where(positive, F32(0), this_min).astype(F32)
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale).astype(F32)
            cur = error(this_scale, lf, this_min)
            take = (D > 0) & (cur < best) & ~flat
            L = np.where(take[:, None], la, L)
            best = np.where(take, cur, best).astype(F32)
            scale = np.where(take, this_scale, scale).astype(F32)
            mn = np.where(take, this_min, mn).astype(F32)
    scale = np.where(flat, F32(0), scale).astype(F32)
    return scale, np.where(flat[:, None], 0, L), np.where(flat, flat_offset, -mn).astype(F32)


def _requantize(x, d, offset, lo, hi, L):
    """Levels of x for the stored sub-block scales d (groups, ) and offsets: nearest_int((x +
    offset)/d) clamped to lo..hi; groups whose stored scale is 0 keep the fit's levels L."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(_nearest_int((x + offset[..., None]) / d[..., None]), lo, hi)
    return np.where((d != 0)[..., None], q, L)


# ---------------------------------------------------------------------------------------------
# Quantization of the super-block formats. Each takes (n_blocks, 256) float32.


def _qnt_q2_k(x):
    nb = x.shape[0]
    g = x.reshape(-1, 16)
    scales, L, mins = _fit_affine(g, np.abs(g), 3, -0.5, 0.1, 15, True)
    scales, mins, L = scales.reshape(nb, 16), mins.reshape(nb, 16), L.reshape(nb, 16, 16)
    max_scale, max_min = _positive_max(scales), _positive_max(mins)
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = _nearest_int((F32(15) / max_scale)[:, None] * scales)
        lm = _nearest_int((F32(15) / max_min)[:, None] * mins)
    ls = np.where(max_scale[:, None] > 0, ls, 0)
    lm = np.where(max_min[:, None] > 0, lm, 0)
    packed = (ls & 0xFF) | ((lm << 4) & 0xFF)
    d = np.where(max_scale > 0, max_scale / F32(15), F32(0)).astype(F32)
    dmin = np.where(max_min > 0, max_min / F32(15), F32(0)).astype(F32)
    dl = _half_round(d)[:, None] * (packed & 0x0F).astype(F32)
    ml = _half_round(dmin)[:, None] * (packed >> 4).astype(F32)
    L = _requantize(x.reshape(nb, 16, 16), dl, ml, 0, 3, L).reshape(nb, 256)
    return np.concatenate(
        [packed.astype(np.uint8), _pack_2bit(L), _half_bytes(d), _half_bytes(dmin)], axis=1
    )


def _qnt_q3_k(x):
    nb = x.shape[0]
    scales, L = _fit_q3(x.reshape(-1, 16), 4)
    scales, L = scales.reshape(nb, 16), L.reshape(nb, 16, 16)
    _, max_scale = _first_absmax(scales)
    has = max_scale != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = F32(-32) / max_scale
        ls = np.clip(_as_int8(_nearest_int(iscale[:, None] * scales)), -32, 31) + 32
        d = np.where(has, F32(1) / iscale, F32(0)).astype(F32)
    ls = np.where(has[:, None], ls, 0)
    packed = _q3k_pack(ls)
    # the levels are fitted again to the scales read back from the stored bytes (when every
    # scale is 0 those bytes are 0, read back as -32, and d = 0 keeps the first fit's levels)
    dl = _half_round(d)[:, None] * _q3k_unpack(packed).astype(F32)
    L = _requantize(x.reshape(nb, 16, 16), dl, np.zeros_like(dl), -4, 3, L - 4) + 4
    L = L.reshape(nb, 256)
    # the high bit of element e goes to bit e // 32 of hmask[e % 32]
    high = (L > 3).astype(np.int64).reshape(nb, 8, 32)
    hmask = (high << np.arange(8).reshape(1, 8, 1)).sum(axis=1)
    return np.concatenate(
        [hmask.astype(np.uint8), _pack_2bit(L & 3), packed, _half_bytes(d)], axis=1
    )


def _k4_common(x, nmax, rmin, nstep):
    """q4_k / q5_k: fit 8 sub-blocks of 32 with weights av + |x| (av = rms of the sub-block),
    store their scales and mins as 6 bits under two fp16 super-scales, re-fit the levels to the
    stored values. Returns (d, dmin, packed scales, L (nb, 256))."""
    nb = x.shape[0]
    g = x.reshape(-1, 32)
    av = np.sqrt(_seq_sum(g * g) / F32(32))
    scales, L, mins = _fit_affine(g, av[:, None] + np.abs(g), nmax, rmin, 0.1, nstep, False)
    scales, mins, L = scales.reshape(nb, 8), mins.reshape(nb, 8), L.reshape(nb, 8, 32)
    max_scale, max_min = _positive_max(scales), _positive_max(mins)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0)).astype(F32)
        inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0)).astype(F32)
    ls = np.minimum(63, _nearest_int(inv_scale[:, None] * scales) & 0xFF)
    lm = np.minimum(63, _nearest_int(inv_min[:, None] * mins) & 0xFF)
    packed = _k4_pack(ls, lm)
    d, dmin = max_scale / F32(63), max_min / F32(63)
    sc, mn = _k4_unpack(packed)
    dl = _half_round(d)[:, None] * sc.astype(F32)
    ml = _half_round(dmin)[:, None] * mn.astype(F32)
    L = _requantize(x.reshape(nb, 8, 32), dl, ml, 0, nmax, L).reshape(nb, 256)
    return d, dmin, packed, L


def _k4_pack_low(L):
    """Low 4 bits of 256 levels: byte 32*g + l = sub-block 2g element l | sub-block 2g+1 << 4."""
    g = (np.asarray(L, np.int64) & 0x0F).reshape(-1, 4, 2, 32)
    return (g[:, :, 0, :] | (g[:, :, 1, :] << 4)).reshape(-1, 128).astype(np.uint8)


def _qnt_q4_k(x):
    d, dmin, packed, L = _k4_common(x, 15, -1.0, 20)
    return np.concatenate([_half_bytes(d), _half_bytes(dmin), packed, _k4_pack_low(L)], axis=1)


def _qnt_q5_k(x):
    d, dmin, packed, L = _k4_common(x, 31, -0.5, 15)
    high = (L >> 4).reshape(-1, 8, 32)
    qh = (high << np.arange(8).reshape(1, 8, 1)).sum(axis=1).astype(np.uint8)
    return np.concatenate(
        [_half_bytes(d), _half_bytes(dmin), packed, qh, _k4_pack_low(L)], axis=1
    )


def _qnt_q6_k(x):
    nb = x.shape[0]
    scales, L = _fit_symmetric(x.reshape(-1, 16), 32)
    scales, L = scales.reshape(nb, 16), L.reshape(nb, 16, 16)
    amax, max_scale = _first_absmax(scales)
    zero = amax < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(-128) / max_scale
        d = F32(1) / iscale
        sc = _as_int8(np.minimum(127, _nearest_int(iscale[:, None] * scales)))
    dl = _half_round(d)[:, None] * sc.astype(F32)
    L = _requantize(x.reshape(nb, 16, 16), dl, np.zeros_like(dl), -32, 31, L - 32) + 32
    L = L.reshape(nb, 2, 4, 32)  # half, group of 32, l
    low = L & 0x0F
    # byte l of each 64: group 0 | group 2 << 4; byte 32 + l: group 1 | group 3 << 4
    ql = np.concatenate(
        [low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2
    ).reshape(nb, 128)
    qh = ((L >> 4) << (2 * np.arange(4)).reshape(1, 1, 4, 1)).sum(axis=2).reshape(nb, 64)
    sc_bytes = sc.astype(np.int8).view(np.uint8)
    out = np.concatenate([ql, qh, sc_bytes, _half_bytes(d)], axis=1).astype(np.uint8)
    out[zero] = 0  # an all-zero super-block is stored as zero bytes (d = +0)
    return out


def _iq4_fit(x, ntry):
    """One IQ4 scale per row of 32 with weights x^2: map the first value of largest magnitude to
    -127 (ntry <= 0) or +127 (ntry > 0), take the least-squares scale of the levels that gives,
    then try the inverse scales (k - 127)/max for k = -ntry..ntry and keep one whose
    sum(w*x*q)^2 / sum(w*q^2) is strictly better. Returns (scale, the first fit's level indices)."""
    amax, vmax = _first_absmax(x)
    zero = amax < GROUP_MAX_EPS
    w = x * x

    def sums(idx):
        q = _IQ4_LEVELS_F[idx]
        wq = w * q
        return _seq_sum(wq * x), _seq_sum(wq * q)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = (-vmax if ntry > 0 else vmax) / F32(-127)
        L = _iq4_index((F32(1) / d)[:, None] * x)
        sqx, sq2 = sums(L)
        d = sqx / sq2
        best = d * sqx
        for k in range(-ntry, ntry + 1):
            idx = _iq4_index((F32(k - 127) / vmax)[:, None] * x)
            sqx, sq2 = sums(idx)
            better = (sq2 > 0) & (sqx * sqx > best * sq2)
            d = np.where(better, sqx / sq2, d).astype(F32)
            best = np.where(better, d * sqx, best).astype(F32)
    return np.where(zero, F32(0), d).astype(F32), np.where(zero[:, None], 0, L)


def _iq4_pack(L):
    """Level indices, 32 per sub-block -> 16 bytes each: element j low nibble, j+16 high."""
    g = np.asarray(L, np.int64).reshape(-1, 2, 16)
    return (g[:, 0] | (g[:, 1] << 4)).astype(np.uint8).reshape(L.shape[0], -1)


def _qnt_iq4_nl(x):
    # the format's plain reference: one fit, no scale search, levels kept from the first pass
    d, L = _iq4_fit(x, -1)
    return np.concatenate([_half_bytes(d), _iq4_pack(L)], axis=1)


def _qnt_iq4_xs(x):
    nb = x.shape[0]
    g = x.reshape(-1, 32)
    scales, _ = _iq4_fit(g, 7)
    scales = scales.reshape(nb, 8)
    _, max_scale = _first_absmax(scales)
    d = -max_scale / F32(32)
    ls = np.clip(_nearest_int(_recip(d)[:, None] * scales), -32, 31)
    dl = d[:, None] * ls.astype(F32)
    # every sub-block's levels are chosen again for its stored scale
    L = _iq4_index(_recip(dl).reshape(-1)[:, None] * g).reshape(nb, 256)
    ls = ls + 32
    scales_l = (ls[:, 0::2] & 0x0F) | ((ls[:, 1::2] & 0x0F) << 4)
    scales_h = ((ls >> 4) << (2 * np.arange(8))).sum(axis=1).astype("<u2")
    return np.concatenate(
        [
            _half_bytes(d),
            scales_h.view(np.uint8).reshape(nb, 2),
            scales_l.astype(np.uint8),
            _iq4_pack(L.reshape(nb * 8, 32)).reshape(nb, 128),
        ],
        axis=1,
    )


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Format:
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    halves: tuple  # byte offsets of the fp16 fields in a block
    dequant: object  # (n_blocks, type_size) uint8 -> (n_blocks, block_size) float32
    quant: object  # (n_blocks, block_size) float32 -> (n_blocks, type_size) uint8


FORMATS = {
    f.name: f
    for f in [
        Format("q4_0", QK, 18, (0,), _deq_q4_0, _qnt_q4_0),
        Format("q4_1", QK, 20, (0, 2), _deq_q4_1, _qnt_q4_1),
        Format("q5_0", QK, 22, (0,), _deq_q5_0, _qnt_q5_0),
        Format("q5_1", QK, 24, (0, 2), _deq_q5_1, _qnt_q5_1),
        Format("q8_0", QK, 34, (0,), _deq_q8_0, _qnt_q8_0),
        Format("q2_k", QK_K, 84, (80, 82), _deq_q2_k, _qnt_q2_k),
        Format("q3_k", QK_K, 110, (108,), _deq_q3_k, _qnt_q3_k),
        Format("q4_k", QK_K, 144, (0, 2), _deq_q4_k, _qnt_q4_k),
        Format("q5_k", QK_K, 176, (0, 2), _deq_q5_k, _qnt_q5_k),
        Format("q6_k", QK_K, 210, (208,), _deq_q6_k, _qnt_q6_k),
        Format("iq4_nl", QK, 18, (0,), _deq_iq4_nl, _qnt_iq4_nl),
        Format("iq4_xs", QK_K, 136, (0,), _deq_iq4_xs, _qnt_iq4_xs),
    ]
}


def dequantize(name, raw):
    """Whole blocks of format name (bytes-like or uint8 array) -> float32 array of their values."""
    f = FORMATS[name]
    b = np.frombuffer(raw, np.uint8) if isinstance(raw, (bytes, bytearray)) else np.asarray(raw)
    if b.dtype != np.uint8 or b.size % f.type_size:
        raise ValueError(f"{name}: {b.size} bytes are not whole {f.type_size}-byte blocks")
    return f.dequant(b.reshape(-1, f.type_size)).reshape(-1).astype(F32)


def quantize(name, x):
    """float32 values (a multiple of the block size) -> uint8 array of blocks of format name."""
    f = FORMATS[name]
    x = np.asarray(x, F32).reshape(-1)
    if x.size % f.block_size:
        raise ValueError(f"{name}: {x.size} values is not a multiple of {f.block_size}")
    return np.ascontiguousarray(f.quant(x.reshape(-1, f.block_size))).reshape(-1).astype(np.uint8)
