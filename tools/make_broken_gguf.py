#!/usr/bin/python3
"""Writes the broken-GGUF corpus into tests/fixtures/gguf_broken/ (committed; re-run only to
change it). Each file is a small valid model with one defect, so `edgellm info` and the model
loader must refuse it with a clear message (checked by tests/gguf_corpus.sh, also under ASan).

usage: /usr/bin/python3 tools/make_broken_gguf.py [OUT_DIR]
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_Q8_0 = 0, 8


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack('<Q', len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack('<I', vtype) + payload


class Model:
    """A tiny llama (1 layer, dim 32, vocab 64) whose parts can be altered before serialising."""

    def __init__(self):
        self.magic = b'GGUF'
        self.version = 3
        self.alignment = 32
        E, F, V = 32, 64, 64
        self.kvs = [
            kv('general.architecture', STR, s('llama')),
            kv('llama.embedding_length', U32, struct.pack('<I', E)),
            kv('llama.block_count', U32, struct.pack('<I', 1)),
            kv('llama.feed_forward_length', U32, struct.pack('<I', F)),
            kv('llama.attention.head_count', U32, struct.pack('<I', 4)),
            kv('llama.context_length', U32, struct.pack('<I', 64)),
        ]
        self.tensors = []  # (name, dims, type)
        for name, dims in [('token_embd.weight', [E, V]), ('output_norm.weight', [E]),
                           ('blk.0.attn_norm.weight', [E]), ('blk.0.attn_q.weight', [E, E]),
                           ('blk.0.attn_k.weight', [E, E]), ('blk.0.attn_v.weight', [E, E]),
                           ('blk.0.attn_output.weight', [E, E]), ('blk.0.ffn_norm.weight', [E]),
                           ('blk.0.ffn_gate.weight', [E, F]), ('blk.0.ffn_up.weight', [E, F]),
                           ('blk.0.ffn_down.weight', [F, E])]:
            self.tensors.append([name, dims, T_F32])
        self.n_kv_override = None
        self.n_tensors_override = None
        self.offset_fn = None  # (index, computed offset) -> offset

    def bytes(self):
        out = bytearray(self.magic + struct.pack('<I', self.version))
        n_t = len(self.tensors) if self.n_tensors_override is None else self.n_tensors_override
        n_kv = len(self.kvs) if self.n_kv_override is None else self.n_kv_override
        out += struct.pack('<QQ', n_t, n_kv)
        for k in self.kvs:
            out += k
        off = 0
        sizes = []
        for i, (name, dims, typ) in enumerate(self.tensors):
            n = 1
            for d in dims:
                n *= d
            size = n * 4 if typ == T_F32 else n // 32 * 34
            size = min(size, 4096)  # absurd shapes: their data is never written
            sizes.append(size)
            o = self.offset_fn(i, off) if self.offset_fn else off
            o &= (1 << 64) - 1
            out += s(name) + struct.pack('<I', len(dims))
            out += b''.join(struct.pack('<Q', d) for d in dims)
            out += struct.pack('<IQ', typ, o)
            off += size
            off += (-off) % self.alignment
        out += b'\0' * ((-len(out)) % self.alignment)
        for size in sizes:
            out += b'\x3c' * size  # 0x3c3c3c3c is a small positive float
            out += b'\0' * ((-len(out)) % self.alignment)
        return bytes(out)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/gguf_broken'
    os.makedirs(out_dir, exist_ok=True)
    cases = {}
    good = Model().bytes()
    cases['empty'] = b''
    cases['text-file'] = b'this is not a model\n'
    cases['truncated-header'] = good[:14]
    cases['truncated-metadata'] = good[:60]
    cases['truncated-tensor-infos'] = good[:300]
    cases['truncated-data'] = good[:len(good) - 100]

    def variant(name, fn):
        m = Model()
        fn(m)
        cases[name] = m.bytes()

    variant('bad-magic', lambda m: setattr(m, 'magic', b'GGML'))
    variant('version-1', lambda m: setattr(m, 'version', 1))
    variant('version-99', lambda m: setattr(m, 'version', 99))
    variant('big-endian', lambda m: setattr(m, 'version', 3 << 24))
    variant('huge-kv-count', lambda m: setattr(m, 'n_kv_override', 1 << 62))
    variant('huge-tensor-count', lambda m: setattr(m, 'n_tensors_override', 1 << 40))
    variant('kv-count-too-high', lambda m: setattr(m, 'n_kv_override', len(m.kvs) + 1))
    variant('huge-string-length', lambda m: m.kvs.append(
        struct.pack('<Q', 1 << 60) + b'general.name'))
    variant('unknown-value-type', lambda m: m.kvs.append(kv('x.y', 77, b'\0' * 8)))
    variant('huge-array', lambda m: m.kvs.append(
        kv('x.arr', ARR, struct.pack('<IQ', U64, 1 << 61))))
    variant('array-string-overrun', lambda m: m.kvs.append(
        kv('x.arr', ARR, struct.pack('<IQ', STR, 3) + s('a') + struct.pack('<Q', 1 << 33))))
    variant('deep-nesting', lambda m: m.kvs.append(
        kv('x.deep', ARR, struct.pack('<IQ', ARR, 1) * 40 + struct.pack('<IQ', U8, 0))))
    variant('bad-bool', lambda m: m.kvs.append(kv('x.b', BOOL, b'\x05')))
    variant('duplicate-key', lambda m: m.kvs.append(m.kvs[1]))
    variant('empty-key', lambda m: m.kvs.append(kv('', U8, b'\x01')))
    variant('bad-alignment', lambda m: m.kvs.append(
        kv('general.alignment', U32, struct.pack('<I', 24))))
    variant('alignment-wrong-type', lambda m: m.kvs.append(
        kv('general.alignment', STR, s('32'))))
    variant('tensor-offset-misaligned', lambda m: setattr(
        m, 'offset_fn', lambda i, o: o + 4 if i == 3 else o))
    variant('tensor-offset-past-end', lambda m: setattr(
        m, 'offset_fn', lambda i, o: (1 << 40) if i == 5 else o))
    variant('tensor-offset-wraps', lambda m: setattr(
        m, 'offset_fn', lambda i, o: (1 << 64) - 32 if i == 2 else o))
    variant('tensor-zero-dims', lambda m: m.tensors[2].__setitem__(1, []))
    variant('tensor-five-dims', lambda m: m.tensors[2].__setitem__(1, [32, 1, 1, 1, 1]))
    variant('tensor-dims-overflow', lambda m: m.tensors[3].__setitem__(
        1, [1 << 31, 1 << 31, 1 << 31, 1 << 31]))
    variant('tensor-unknown-type', lambda m: m.tensors[4].__setitem__(2, 250))
    variant('tensor-row-not-block-multiple', lambda m: (
        m.tensors[4].__setitem__(2, T_Q8_0), m.tensors[4].__setitem__(1, [33, 32])))
    variant('tensor-duplicate-name', lambda m: m.tensors[6].__setitem__(0, 'blk.0.attn_q.weight'))
    variant('tensor-empty-name', lambda m: m.tensors[6].__setitem__(0, ''))
    variant('tensor-name-too-long', lambda m: m.tensors[6].__setitem__(0, 'x' * 300))
    # valid files that no model loader can run
    variant('model-unknown-arch', lambda m: m.kvs.__setitem__(
        0, kv('general.architecture', STR, s('mamba9'))))
    variant('model-missing-arch', lambda m: m.kvs.pop(0))
    variant('model-missing-tensor', lambda m: m.tensors.pop(8))
    variant('model-wrong-shape', lambda m: m.tensors[9].__setitem__(1, [64, 32]))
    variant('model-missing-hparam', lambda m: m.kvs.pop(1))
    variant('model-zero-heads', lambda m: m.kvs.__setitem__(
        4, kv('llama.attention.head_count', U32, struct.pack('<I', 0))))
    variant('model-head-count-array', lambda m: m.kvs.__setitem__(
        4, kv('llama.attention.head_count', ARR, struct.pack('<IQ', U32, 1) + struct.pack('<I', 4))))
    variant('model-hparam-wrong-type', lambda m: m.kvs.__setitem__(
        1, kv('llama.embedding_length', STR, s('32'))))
    for name, data in sorted(cases.items()):
        with open(os.path.join(out_dir, name + '.gguf'), 'wb') as f:
            f.write(data)
    with open(os.path.join(out_dir, 'README'), 'w') as f:
        f.write('Broken GGUF files, one defect each, written by tools/make_broken_gguf.py.\n'
                'tests/gguf_corpus.sh requires `edgellm info` to refuse every one of them with\n'
                'a message naming the file and exit code 1 (also under ASan/UBSan).\n')
    print('%d files in %s' % (len(cases), out_dir))


if __name__ == '__main__':
    main()
