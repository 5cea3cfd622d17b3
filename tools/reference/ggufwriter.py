"""Minimal GGUF v3 writer and reference quantizers, for the reference self-tests only.

Owns: writing small GGUF files (metadata of every value type, F32/F16/BF16/Q8_0/Q4_0 tensors)
so the reader and the reference model can be tested before, and independently of, the engine's
own writer and model generator.

Deliberately does not: aim for speed or cover every type; real test models come from
build/genmodel (the engine's writer), and this file must never be used to judge the engine.
"""

import struct

import numpy as np

from gguf import (
    DEFAULT_ALIGNMENT,
    T_ARRAY,
    T_BOOL,
    T_F32,
    T_F64,
    T_I32,
    T_I64,
    T_STRING,
    T_U32,
    T_U64,
    TYPE_IDS,
    _SCALAR_FMT,
)

# ---------------------------------------------------------------------------------------------
# Quantizers (float array with last dim a multiple of the block size -> raw bytes)


def quant_f32(x):
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def quant_f16(x):
    return np.ascontiguousarray(x, dtype="<f2").tobytes()


def quant_bf16(x):
    # round to nearest even on the dropped 16 bits
    u = np.ascontiguousarray(x, dtype="<f4").view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def quant_q8_0(x):
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
    q = np.round(b * inv[:, None]).astype(np.int8)
    out = np.zeros((b.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def quant_q4_0(x):
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    idx = np.abs(b).argmax(axis=1)
    vmax = b[np.arange(b.shape[0]), idx]  # signed value of largest magnitude
    d = vmax / -8.0
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0.0)
    q = np.clip(np.trunc(b * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    out = np.zeros((b.shape[0], 18), dtype=np.uint8)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


QUANTIZERS = {
    "F32": quant_f32,
    "F16": quant_f16,
    "BF16": quant_bf16,
    "Q8_0": quant_q8_0,
    "Q4_0": quant_q4_0,
}

# ---------------------------------------------------------------------------------------------
# Writer


def _guess_type(v):
    if isinstance(v, bool):
        return T_BOOL
    if isinstance(v, int):
        return T_U32 if 0 <= v < 2**32 else T_I64
    if isinstance(v, float):
        return T_F32
    if isinstance(v, str):
        return T_STRING
    if isinstance(v, (list, tuple)):
        return T_ARRAY
    raise TypeError(f"cannot store {type(v)} in GGUF metadata")


def _pack_value(vtype, v, elem_type=None):
    if vtype in _SCALAR_FMT:
        return struct.pack(_SCALAR_FMT[vtype], v)
    if vtype == T_STRING:
        b = v.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if vtype == T_ARRAY:
        if elem_type is None:
            elem_type = _guess_type(v[0]) if len(v) else T_I32
        out = struct.pack("<IQ", elem_type, len(v))
        for e in v:
            out += _pack_value(elem_type, e)
        return out
    raise ValueError(vtype)


def write_gguf(path, metadata, tensors, alignment=DEFAULT_ALIGNMENT, version=3):
    """Write a GGUF file.

    metadata: dict key -> value, or key -> (vtype, value) or (T_ARRAY, elem_type, value) for an
    explicit type. tensors: list of (name, numpy float array in C order, type name); the GGUF ne
    is the reversed numpy shape.
    """
    kv = b""
    md = dict(metadata)
    if alignment != DEFAULT_ALIGNMENT:
        md["general.alignment"] = (T_U32, alignment)
    for key, v in md.items():
        if isinstance(v, tuple) and v and isinstance(v[0], int) and not isinstance(v[0], bool):
            if v[0] == T_ARRAY:
                vtype, payload = T_ARRAY, _pack_value(T_ARRAY, v[2], v[1])
            else:
                vtype, payload = v[0], _pack_value(v[0], v[1])
        else:
            vtype = _guess_type(v)
            payload = _pack_value(vtype, v)
        kv += _pack_value(T_STRING, key) + struct.pack("<I", vtype) + payload

    infos = b""
    blobs = []
    offset = 0
    for name, arr, tname in tensors:
        data = QUANTIZERS[tname](arr)
        ne = list(reversed(arr.shape))
        infos += _pack_value(T_STRING, name) + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", TYPE_IDS[tname], offset)
        blobs.append((offset, data))
        offset = (offset + len(data) + alignment - 1) // alignment * alignment

    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(md)) + kv + infos
    pad = (-len(head)) % alignment
    with open(path, "wb") as f:
        f.write(head + b"\0" * pad)
        pos = 0
        for off, data in blobs:
            f.write(b"\0" * (off - pos))
            f.write(data)
            pos = off + len(data)


__all__ = ["write_gguf", "QUANTIZERS", "T_F64", "T_U64", "T_I32", "T_ARRAY", "T_STRING"]
