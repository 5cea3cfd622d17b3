#!/usr/bin/python3
"""Writes the broken-GGUF corpus into tests/fixtures/gguf_broken/ (committed; re-run only to
change it). Each file is a small valid model with one defect, so the GGUF reader or the model
loader must refuse it with a clear message (checked by tests/gguf_corpus.sh, also under ASan).

Besides the files it writes OUT_DIR/EXPECTED: one line per file, "<file><TAB><fragment>", where
the fragment is the part of the error message that says what is wrong — so a file refused for
another reason (say, a reader error where the loader should have spoken) fails the test.

With --valid FILE it also writes the unaltered model to FILE: the control that must load.

usage: /usr/bin/python3 tools/make_broken_gguf.py [OUT_DIR] [--valid FILE]
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_Q8_0, T_I32 = 0, 8, 26


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack('<Q', len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack('<I', vtype) + payload


class Model:
    """A tiny llama (1 layer, dim 16, 4 heads, ffn 32, vocab 32; about 14 KiB) whose parts can be
    altered before serialising."""

    def __init__(self):
        self.magic = b'GGUF'
        self.version = 3
        self.alignment = 32
        E, F, V = 16, 32, 32
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
        self.kv_end = len(out)
        off = 0
        sizes = []
        self.offsets = []  # data offset of each tensor as written
        for i, (name, dims, typ) in enumerate(self.tensors):
            n = 1
            for d in dims:
                n *= d
            size = n // 32 * 34 if typ == T_Q8_0 else n * 4
            if size > 1 << 20:  # absurd shapes (overflow tests): their data is never written
                size = 0
            sizes.append(size)
            o = self.offset_fn(i, off) if self.offset_fn else off
            o &= (1 << 64) - 1
            self.offsets.append(o)
            out += s(name) + struct.pack('<I', len(dims))
            out += b''.join(struct.pack('<Q', d) for d in dims)
            out += struct.pack('<IQ', typ, o)
            off += size
            off += (-off) % self.alignment
        self.infos_end = len(out)
        out += b'\0' * ((-len(out)) % self.alignment)
        for size in sizes:
            out += b'\x3c' * size  # 0x3c3c3c3c is a small positive float
            out += b'\0' * ((-len(out)) % self.alignment)
        return bytes(out)


def cases():
    """name -> (file contents, fragment its error message must contain)."""
    out = {}
    base = Model()
    good = base.bytes()
    kv_end = base.kv_end  # where a metadata entry appended by a variant starts
    ffn_down = base.offsets[10]
    out['empty'] = (b'', 'empty file')
    out['text-file'] = (b'this is not a model\n', 'not a GGUF file (bad magic)')
    out['truncated-header'] = (good[:14], 'truncated at byte 8 reading tensor count')
    out['truncated-metadata'] = (good[:60], '6 metadata entries cannot fit in the file')
    # cut in the last tensor info, 6 bytes short: its 28 bytes of dims/type/offset are incomplete
    out['truncated-tensor-infos'] = (
        good[:base.infos_end - 6],
        'truncated at byte %d reading tensor shape, type and offset (28 bytes needed, 22 left)'
        % (base.infos_end - 28))
    out['truncated-data'] = (good[:len(good) - 100],
                             "tensor 'blk.0.ffn_down.weight' (2048 bytes at data offset %d) "
                             'extends past the end of the file' % ffn_down)

    def variant(name, fn, fragment):
        m = Model()
        fn(m)
        out[name] = (m.bytes(), fragment)

    variant('bad-magic', lambda m: setattr(m, 'magic', b'GGML'), 'not a GGUF file (bad magic)')
    variant('version-1', lambda m: setattr(m, 'version', 1), 'GGUF version 1 is obsolete')
    variant('version-99', lambda m: setattr(m, 'version', 99), 'unsupported GGUF version 99')
    variant('big-endian', lambda m: setattr(m, 'version', 3 << 24),
            'big-endian GGUF files are not supported')
    variant('huge-kv-count', lambda m: setattr(m, 'n_kv_override', 1 << 62),
            '4611686018427387904 metadata entries cannot fit in the file')
    variant('huge-tensor-count', lambda m: setattr(m, 'n_tensors_override', 1 << 40),
            '1099511627776 tensors cannot fit in the file')
    # one entry too many: the reader takes the first tensor info for a key, whose "value" then
    # swallows the rest; the file is refused where the misread data stops making sense
    variant('kv-count-too-high', lambda m: setattr(m, 'n_kv_override', len(m.kvs) + 1),
            'tensor 0 has a name of length')
    variant('huge-string-length', lambda m: m.kvs.append(
        struct.pack('<Q', 1 << 60) + b'general.name'),
        'metadata key at byte %d has absurd length 1152921504606846976' % kv_end)
    variant('unknown-value-type', lambda m: m.kvs.append(kv('x.y', 77, b'\0' * 8)),
            "metadata 'x.y' has unknown value type 77")
    variant('huge-array', lambda m: m.kvs.append(
        kv('x.arr', ARR, struct.pack('<IQ', U64, 1 << 61))),
        'array of 2305843009213693952 elements at byte %d exceeds the file'
        % (kv_end + 8 + len('x.arr') + 4))
    variant('array-string-overrun', lambda m: m.kvs.append(
        kv('x.arr', ARR, struct.pack('<IQ', STR, 3) + s('a') + struct.pack('<Q', 1 << 33))),
        'array string at byte %d has absurd length 8589934592'
        % (kv_end + 8 + len('x.arr') + 4 + 12 + 9))
    variant('deep-nesting', lambda m: m.kvs.append(
        kv('x.deep', ARR, struct.pack('<IQ', ARR, 1) * 40 + struct.pack('<IQ', U8, 0))),
        'arrays nested deeper than 8')
    variant('bad-bool', lambda m: m.kvs.append(kv('x.b', BOOL, b'\x05')),
            'bool value is 5, not 0 or 1')
    variant('duplicate-key', lambda m: m.kvs.append(m.kvs[1]),
            "metadata key 'llama.embedding_length' appears twice")
    variant('empty-key', lambda m: m.kvs.append(kv('', U8, b'\x01')),
            'metadata key 6 is empty or contains NUL')
    variant('bad-alignment', lambda m: m.kvs.append(
        kv('general.alignment', U32, struct.pack('<I', 24))),
        'general.alignment must be a u32 power of two')
    variant('alignment-wrong-type', lambda m: m.kvs.append(
        kv('general.alignment', STR, s('32'))), 'general.alignment must be a u32 power of two')
    variant('tensor-offset-misaligned', lambda m: setattr(
        m, 'offset_fn', lambda i, o: o + 4 if i == 3 else o),
        "tensor 'blk.0.attn_q.weight' offset %d is not aligned to 32" % (base.offsets[3] + 4))
    variant('tensor-offset-past-end', lambda m: setattr(
        m, 'offset_fn', lambda i, o: (1 << 40) if i == 5 else o),
        "tensor 'blk.0.attn_v.weight' (1024 bytes at data offset 1099511627776) extends past the "
        'end of the file')
    variant('tensor-offset-wraps', lambda m: setattr(
        m, 'offset_fn', lambda i, o: (1 << 64) - 32 if i == 2 else o),
        "tensor 'blk.0.attn_norm.weight' (64 bytes at data offset 18446744073709551584) extends "
        'past the end of the file')
    variant('tensor-zero-dims', lambda m: m.tensors[2].__setitem__(1, []),
            'tensor 2 has 0 dimensions (1..4 allowed)')
    variant('tensor-five-dims', lambda m: m.tensors[2].__setitem__(1, [16, 1, 1, 1, 1]),
            'tensor 2 has 5 dimensions (1..4 allowed)')
    variant('tensor-dims-overflow', lambda m: m.tensors[3].__setitem__(
        1, [1 << 31, 1 << 31, 1 << 31, 1 << 31]),
        "tensor 'blk.0.attn_q.weight' has an overflowing shape")
    variant('tensor-unknown-type', lambda m: m.tensors[4].__setitem__(2, 250),
            "tensor 'blk.0.attn_k.weight' has unknown type id 250")
    variant('tensor-row-not-block-multiple', lambda m: (
        m.tensors[4].__setitem__(2, T_Q8_0), m.tensors[4].__setitem__(1, [33, 32])),
        "tensor 'blk.0.attn_k.weight' row of 33 elements is not a multiple of the q8_0 block size")
    variant('tensor-duplicate-name', lambda m: m.tensors[6].__setitem__(0, 'blk.0.attn_q.weight'),
            "tensor name 'blk.0.attn_q.weight' appears twice")
    variant('tensor-empty-name', lambda m: m.tensors[6].__setitem__(0, ''),
            'tensor 6 has a name of length 0 (1..256 allowed)')
    variant('tensor-name-too-long', lambda m: m.tensors[6].__setitem__(0, 'x' * 300),
            'tensor 6 has a name of length 300 (1..256 allowed)')
    # valid GGUF files that no model loader can run: refused by the loader, not the reader
    variant('model-unknown-arch', lambda m: m.kvs.__setitem__(
        0, kv('general.architecture', STR, s('mamba9'))),
        "architecture 'mamba9' is not supported (supported: llama, qwen2, qwen3)")
    variant('model-missing-arch', lambda m: m.kvs.pop(0), 'general.architecture is missing')
    variant('model-missing-tensor', lambda m: m.tensors.pop(8),
            "tensor 'blk.0.ffn_gate.weight' is missing")
    variant('model-wrong-shape', lambda m: m.tensors[9].__setitem__(1, [32, 16]),
            "tensor 'blk.0.ffn_up.weight' has shape [32, 16, 1, 1], expected [16, 32]")
    variant('model-missing-hparam', lambda m: m.kvs.pop(1),
            'required metadata llama.embedding_length is missing')
    variant('model-zero-heads', lambda m: m.kvs.__setitem__(
        4, kv('llama.attention.head_count', U32, struct.pack('<I', 0))),
        'llama.attention.head_count = 0 is out of range [1, 1024]')
    variant('model-head-count-array', lambda m: m.kvs.__setitem__(
        4, kv('llama.attention.head_count', ARR, struct.pack('<IQ', U32, 1) + struct.pack('<I', 4))),
        'per-layer llama.attention.head_count (an array) is not supported')
    variant('model-hparam-wrong-type', lambda m: m.kvs.__setitem__(
        1, kv('llama.embedding_length', STR, s('16'))),
        'llama.embedding_length is a string, expected an integer')
    variant('model-kv-heads-not-divisor', lambda m: m.kvs.append(
        kv('llama.attention.head_count_kv', U32, struct.pack('<I', 3))),
        'head_count 4 is not a multiple of head_count_kv 3')
    variant('model-vocab-mismatch', lambda m: m.kvs.append(
        kv('llama.vocab_size', U32, struct.pack('<I', 40))),
        'vocab_size 40 does not match token_embd.weight rows 32')
    variant('model-rope-scaling-unknown', lambda m: m.kvs.append(
        kv('llama.rope.scaling.type', STR, s('yarn'))), "rope scaling 'yarn' is not supported")
    variant('model-type-without-kernel', lambda m: m.tensors[3].__setitem__(2, T_I32),
            "tensor 'blk.0.attn_q.weight' has type i32, which this build cannot run")
    return out


def main():
    args = sys.argv[1:]
    valid = None
    if '--valid' in args:
        i = args.index('--valid')
        valid = args[i + 1]
        del args[i:i + 2]
    out_dir = args[0] if args else 'tests/fixtures/gguf_broken'
    os.makedirs(out_dir, exist_ok=True)
    all_cases = cases()
    for name, (data, _) in sorted(all_cases.items()):
        with open(os.path.join(out_dir, name + '.gguf'), 'wb') as f:
            f.write(data)
    with open(os.path.join(out_dir, 'EXPECTED'), 'w') as f:
        for name, (_, fragment) in sorted(all_cases.items()):
            assert '\t' not in fragment and '\n' not in fragment
            f.write('%s.gguf\t%s\n' % (name, fragment))
    with open(os.path.join(out_dir, 'README'), 'w') as f:
        f.write('Broken GGUF files, one defect each, written by tools/make_broken_gguf.py.\n'
                'tests/gguf_corpus.sh requires `edgellm info` and `edgellm logits` to refuse every\n'
                'one of them with exit code 1 and one line that names the file and contains the\n'
                'fragment EXPECTED lists for it (also under ASan/UBSan).\n')
    if valid:
        with open(valid, 'wb') as f:
            f.write(Model().bytes())
    print('%d files in %s' % (len(all_cases), out_dir))


if __name__ == '__main__':
    main()
