"""GGUF reader for the reference implementation, written from the format specification.

Owns: parsing GGUF v2/v3 headers, metadata (every value type, nested arrays), tensor infos,
and dequantizing tensor data to numpy float arrays.

Deliberately does not: share any code with the C engine (this is the independent side of the
reference checks), validate hostile files beyond what a clear error needs, or write GGUF files
(see ggufwriter.py, used only by the self-tests).

Adding a tensor type: write `_dequant_<name>(raw: bytes-like uint8 array, n: int) -> float32
array` and register it in TYPES with its block size and bytes per block. Nothing else changes.
The block formats other than Q8_0 and Q4_0 are dequantized by quants.py (same directory).

Shapes: GGUF lists dimensions with ne[0] the contiguous one. `Tensor.array()` returns the numpy
array in C order, i.e. shape reversed(ne): a weight with ne=[in, out] comes back as (out, in),
so y = W @ x.
"""

import mmap
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

import quants

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Metadata value types (append-only in the spec).
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 = (
    range(13)
)

_SCALAR_FMT = {
    T_U8: "<B",
    T_I8: "<b",
    T_U16: "<H",
    T_I16: "<h",
    T_U32: "<I",
    T_I32: "<i",
    T_F32: "<f",
    T_BOOL: "<?",
    T_U64: "<Q",
    T_I64: "<q",
    T_F64: "<d",
}


class GGUFError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Dequantization. Each function takes the raw bytes of a tensor (numpy uint8 array, exactly
# n_blocks * type_size long) and the element count, and returns float32 of length n.


def _f16_from(raw):
    return raw.view("<f2").astype(np.float32)


def _dequant_f32(raw, n):
    return raw.view("<f4").astype(np.float32)


def _dequant_f16(raw, n):
    return _f16_from(raw)


def _dequant_bf16(raw, n):
    # bf16 is the high half of an IEEE float32.
    u = raw.view("<u2").astype(np.uint32) << 16
    return u.view(np.float32)


def _blocks(raw, type_size):
    return raw.reshape(-1, type_size)


def _dequant_q8_0(raw, n):
    # block: f16 d, int8 qs[32]; x = d * q
    b = _blocks(raw, 34)
    d = _f16_from(np.ascontiguousarray(b[:, 0:2])).reshape(-1, 1)
    q = b[:, 2:34].view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def _dequant_q4_0(raw, n):
    # block: f16 d, uint8 qs[16]; element j<16 is the low nibble of qs[j], element j+16 the
    # high nibble; x = d * (q - 8)
    b = _blocks(raw, 18)
    d = _f16_from(np.ascontiguousarray(b[:, 0:2])).reshape(-1, 1)
    qs = b[:, 2:18]
    lo = (qs & 0x0F).astype(np.float32) - 8.0
    hi = (qs >> 4).astype(np.float32) - 8.0
    return (d * np.concatenate([lo, hi], axis=1)).reshape(-1)


def _dequant_block_format(name):
    return lambda raw, n: quants.dequantize(name, raw)


@dataclass(frozen=True)
class TypeTraits:
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    dequant: object  # function (raw uint8 array, n) -> float32 array, or None if unsupported


# ggml type ids (append-only upstream). Types without a dequant function are recognised (so
# sizes and offsets can be checked and `info`-style listings work) but cannot be read yet.
TYPES = {
    0: TypeTraits("F32", 1, 4, _dequant_f32),
    1: TypeTraits("F16", 1, 2, _dequant_f16),
    2: TypeTraits("Q4_0", 32, 18, _dequant_q4_0),
    3: TypeTraits("Q4_1", 32, 20, _dequant_block_format("q4_1")),
    6: TypeTraits("Q5_0", 32, 22, _dequant_block_format("q5_0")),
    7: TypeTraits("Q5_1", 32, 24, _dequant_block_format("q5_1")),
    8: TypeTraits("Q8_0", 32, 34, _dequant_q8_0),
    9: TypeTraits("Q8_1", 32, 36, None),
    10: TypeTraits("Q2_K", 256, 84, _dequant_block_format("q2_k")),
    11: TypeTraits("Q3_K", 256, 110, _dequant_block_format("q3_k")),
    12: TypeTraits("Q4_K", 256, 144, _dequant_block_format("q4_k")),
    13: TypeTraits("Q5_K", 256, 176, _dequant_block_format("q5_k")),
    14: TypeTraits("Q6_K", 256, 210, _dequant_block_format("q6_k")),
    15: TypeTraits("Q8_K", 256, 292, None),
    20: TypeTraits("IQ4_NL", 32, 18, _dequant_block_format("iq4_nl")),
    23: TypeTraits("IQ4_XS", 256, 136, _dequant_block_format("iq4_xs")),
    24: TypeTraits("I8", 1, 1, None),
    25: TypeTraits("I16", 1, 2, None),
    26: TypeTraits("I32", 1, 4, None),
    27: TypeTraits("I64", 1, 8, None),
    28: TypeTraits("F64", 1, 8, lambda raw, n: raw.view("<f8").astype(np.float64)),
    30: TypeTraits("BF16", 1, 2, _dequant_bf16),
}

TYPE_IDS = {t.name: i for i, t in TYPES.items()}


# ---------------------------------------------------------------------------------------------
# Reader


@dataclass
class Tensor:
    name: str
    ne: tuple  # dimensions, ne[0] contiguous
    type_id: int
    offset: int  # relative to the data section
    _file: "GGUFFile" = field(repr=False, default=None)

    @property
    def n_elements(self):
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def traits(self):
        return TYPES[self.type_id]

    @property
    def n_bytes(self):
        t = self.traits
        return self.n_elements // t.block_size * t.type_size

    @property
    def shape(self):
        """numpy (C order) shape: reversed ne."""
        return tuple(reversed(self.ne))

    def raw(self):
        start = self._file.data_offset + self.offset
        return np.frombuffer(self._file.buf, dtype=np.uint8, count=self.n_bytes, offset=start)

    def array(self, dtype=np.float64):
        t = self.traits
        if t.dequant is None:
            raise GGUFError(f"{self.name}: tensor type {t.name} has no dequantizer yet")
        x = t.dequant(self.raw(), self.n_elements)
        return x.astype(dtype).reshape(self.shape)


class _Cursor:
    def __init__(self, buf, path):
        self.buf = buf
        self.pos = 0
        self.path = path

    def need(self, n, what):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated while reading {what} at offset {self.pos}")

    def scalar(self, fmt, what):
        size = struct.calcsize(fmt)
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u32(self, what):
        return self.scalar("<I", what)

    def u64(self, what):
        return self.scalar("<Q", what)

    def string(self, what):
        n = self.u64(what + " length")
        self.need(n, what)
        s = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: {what} is not valid UTF-8")

    def value(self, vtype, what, depth=0):
        if vtype in _SCALAR_FMT:
            return self.scalar(_SCALAR_FMT[vtype], what)
        if vtype == T_STRING:
            return self.string(what)
        if vtype == T_ARRAY:
            if depth > 16:
                raise GGUFError(f"{self.path}: {what}: arrays nested too deeply")
            etype = self.u32(what + " element type")
            count = self.u64(what + " count")
            if etype in _SCALAR_FMT:
                size = struct.calcsize(_SCALAR_FMT[etype])
                self.need(count * size, what)
                arr = np.frombuffer(
                    self.buf, dtype=np.dtype(_SCALAR_FMT[etype]), count=count, offset=self.pos
                )
                self.pos += count * size
                return arr.tolist()
            return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(count)]
        raise GGUFError(f"{self.path}: {what}: unknown metadata value type {vtype}")


class GGUFFile:
    """A parsed GGUF file. Holds the file mapping; tensors are read lazily from it."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            try:
                self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file
                self.buf = b""
        c = _Cursor(self.buf, path)
        c.need(4, "magic")
        if bytes(self.buf[0:4]) != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (bad magic)")
        c.pos = 4
        self.version = c.u32("version")
        if self.version not in (2, 3):
            raise GGUFError(f"{path}: unsupported GGUF version {self.version}")
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("metadata count")

        self.metadata = {}
        self.metadata_types = {}
        for i in range(n_kv):
            key = c.string(f"metadata key #{i}")
            vtype = c.u32(f"type of {key}")
            self.metadata[key] = c.value(vtype, key)
            self.metadata_types[key] = vtype

        self.tensors = {}
        for i in range(n_tensors):
            name = c.string(f"tensor name #{i}")
            n_dims = c.u32(f"{name} n_dims")
            if n_dims > 4:
                raise GGUFError(f"{path}: {name}: {n_dims} dimensions (max 4)")
            ne = tuple(c.u64(f"{name} ne[{d}]") for d in range(n_dims))
            type_id = c.u32(f"{name} type")
            offset = c.u64(f"{name} offset")
            if type_id not in TYPES:
                raise GGUFError(f"{path}: {name}: unknown tensor type {type_id}")
            t = Tensor(name, ne, type_id, offset, self)
            if ne and ne[0] % t.traits.block_size != 0:
                raise GGUFError(
                    f"{path}: {name}: ne[0]={ne[0]} not a multiple of the {t.traits.name} "
                    f"block size {t.traits.block_size}"
                )
            if name in self.tensors:
                raise GGUFError(f"{path}: duplicate tensor {name}")
            self.tensors[name] = t

        self.alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        if self.alignment <= 0:
            raise GGUFError(f"{path}: bad general.alignment {self.alignment}")
        self.data_offset = (c.pos + self.alignment - 1) // self.alignment * self.alignment
        for t in self.tensors.values():
            if self.data_offset + t.offset + t.n_bytes > len(self.buf):
                raise GGUFError(f"{path}: {t.name}: data runs past end of file")

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def tensor(self, name):
        return self.tensors[name]

    def array(self, name, dtype=np.float64):
        return self.tensors[name].array(dtype)


def main(argv):
    """Print a summary of a GGUF file: `gguf.py FILE`."""
    g = GGUFFile(argv[1])
    print(f"GGUF v{g.version}, {len(g.metadata)} metadata keys, {len(g.tensors)} tensors")
    for k, v in g.metadata.items():
        s = repr(v)
        print(f"  {k} = {s[:100] + '...' if len(s) > 100 else s}")
    for t in g.tensors.values():
        print(f"  {t.name:40s} {t.traits.name:6s} {list(t.ne)}")


if __name__ == "__main__":
    main(sys.argv)
