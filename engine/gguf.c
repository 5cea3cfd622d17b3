/*
 * gguf.c — the GGUF reader: maps a file read-only, parses and validates its header, metadata and
 * tensor infos. It owns the mapping and the parsed metadata; tensor data is never copied.
 *
 * Trust model: the file is hostile until proven otherwise. Every length, count, offset and
 * dimension is checked against the bytes that remain (and for overflow) before it is used, so
 * allocations are bounded by a small multiple of the file size. It does not interpret what the
 * metadata means (model.c does).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC             "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH         8            /* nesting of arrays in metadata */
#define GGUF_MAX_STRING        (1ull << 30) /* one metadata string */
#define GGUF_MAX_NAME          256          /* tensor name */

struct eng_gguf {
    char *path;
    const uint8_t *base; /* whole file */
    size_t size;
    bool mapped; /* base is our mmap (unmap on close) */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    struct eng_gguf_kv *kv; /* (n_kv) */
    int64_t n_tensors;
    struct eng_tensor *tensors; /* (n_tensors) */
    char *names;                /* tensor names, one allocation */
    int64_t *hash;              /* open addressing over tensors, (hash_cap), -1 empty */
    int64_t hash_cap;
};

/* ---- bounded reading ---- */

struct rd {
    const uint8_t *p;
    size_t size, off;
    const char *label;
};

static int need(struct rd *r, uint64_t n, const char *what) {
    if (n > r->size - r->off)
        return eng_fail(ENG_EFORMAT,
                        "%s: truncated at byte %zu reading %s (%llu bytes needed, %zu left)",
                        r->label, r->off, what, (unsigned long long)n, r->size - r->off);
    return 0;
}

static int rd_bytes(struct rd *r, void *out, size_t n, const char *what) {
    int err = need(r, n, what);
    if (err) return err;
    memcpy(out, r->p + r->off, n);
    r->off += n;
    return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what) {
    return rd_bytes(r, v, 4, what);
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what) {
    return rd_bytes(r, v, 8, what);
}

/* Reads a GGUF string into a fresh NUL-terminated allocation. */
static int rd_str(struct rd *r, struct eng_gguf_str *s, const char *what) {
    uint64_t len;
    int err = rd_u64(r, &len, what);
    if (err) return err;
    if (len > GGUF_MAX_STRING)
        return eng_fail(ENG_EFORMAT, "%s: %s at byte %zu has absurd length %llu", r->label, what,
                        r->off - 8, (unsigned long long)len);
    if ((err = need(r, len, what))) return err;
    char *c = malloc(len + 1);
    if (!c) return eng_fail(ENG_ENOMEM, "%s: out of memory reading %s", r->label, what);
    memcpy(c, r->p + r->off, len);
    c[len] = 0;
    r->off += len;
    s->s = c;
    s->len = len;
    return 0;
}

size_t eng_gguf_vtype_size(enum eng_gguf_vtype t) {
    switch (t) {
    case ENG_GGUF_U8:
    case ENG_GGUF_I8:
    case ENG_GGUF_BOOL:
        return 1;
    case ENG_GGUF_U16:
    case ENG_GGUF_I16:
        return 2;
    case ENG_GGUF_U32:
    case ENG_GGUF_I32:
    case ENG_GGUF_F32:
        return 4;
    case ENG_GGUF_U64:
    case ENG_GGUF_I64:
    case ENG_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

const char *eng_gguf_vtype_name(enum eng_gguf_vtype t) {
    static const char *const names[ENG_GGUF_VTYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                            "i32", "f32", "bool", "string", "array",
                                                            "u64", "i64", "f64"};
    return (unsigned)t < ENG_GGUF_VTYPE_COUNT ? names[t] : "?";
}

static void value_free(struct eng_gguf_value *v) {
    if (v->type == ENG_GGUF_STRING) {
        free((void *)v->v.str.s);
    } else if (v->type == ENG_GGUF_ARRAY) {
        if (v->v.arr.elem_type == ENG_GGUF_STRING) {
            struct eng_gguf_str *s = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)s[i].s);
        } else if (v->v.arr.elem_type == ENG_GGUF_ARRAY) {
            struct eng_gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) value_free(&a[i]);
        }
        free(v->v.arr.data);
    }
    v->type = ENG_GGUF_U8;
}

static int rd_value(struct rd *r, enum eng_gguf_vtype type, struct eng_gguf_value *v, int depth);

/* Reads an array body (elem type, count, elements) into v. */
static int rd_array(struct rd *r, struct eng_gguf_value *v, int depth) {
    uint32_t et;
    uint64_t n;
    int err;
    if (depth >= GGUF_MAX_DEPTH)
        return eng_fail(ENG_EFORMAT, "%s: arrays nested deeper than %d at byte %zu", r->label,
                        GGUF_MAX_DEPTH, r->off);
    if ((err = rd_u32(r, &et, "array element type"))) return err;
    if (et >= ENG_GGUF_VTYPE_COUNT)
        return eng_fail(ENG_EFORMAT, "%s: unknown array element type %u at byte %zu", r->label, et,
                        r->off - 4);
    if ((err = rd_u64(r, &n, "array length"))) return err;
    /* Every element occupies at least min_bytes of the file: bounds the allocation. */
    size_t esize = eng_gguf_vtype_size((enum eng_gguf_vtype)et);
    uint64_t min_bytes = esize ? esize : (et == ENG_GGUF_STRING ? 8 : 12);
    if (n > (r->size - r->off) / min_bytes)
        return eng_fail(ENG_EFORMAT, "%s: array of %llu elements at byte %zu exceeds the file",
                        r->label, (unsigned long long)n, r->off - 12);
    v->type = ENG_GGUF_ARRAY;
    v->v.arr.elem_type = (enum eng_gguf_vtype)et;
    v->v.arr.n = 0;
    size_t slot = esize ? esize
                        : (et == ENG_GGUF_STRING ? sizeof(struct eng_gguf_str)
                                                 : sizeof(struct eng_gguf_value));
    v->v.arr.data = calloc(n ? n : 1, slot);
    if (!v->v.arr.data) return eng_fail(ENG_ENOMEM, "%s: out of memory for an array", r->label);
    if (esize) {
        memcpy(v->v.arr.data, r->p + r->off, n * esize);
        r->off += n * esize;
        v->v.arr.n = n;
        if (et == ENG_GGUF_BOOL) {
            const uint8_t *b = v->v.arr.data;
            for (uint64_t i = 0; i < n; i++)
                if (b[i] > 1)
                    return eng_fail(ENG_EFORMAT, "%s: bool array element is %u, not 0 or 1",
                                    r->label, b[i]);
        }
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        v->v.arr.n = i + 1; /* counted first, so value_free frees a partly read element too */
        if (et == ENG_GGUF_STRING) {
            err = rd_str(r, &((struct eng_gguf_str *)v->v.arr.data)[i], "array string");
        } else {
            err = rd_array(r, &((struct eng_gguf_value *)v->v.arr.data)[i], depth + 1);
        }
        if (err) return err;
    }
    return 0;
}

static int rd_value(struct rd *r, enum eng_gguf_vtype type, struct eng_gguf_value *v, int depth) {
    int err;
    uint8_t b[8];
    v->type = type;
    switch (type) {
    case ENG_GGUF_STRING:
        return rd_str(r, &v->v.str, "string value");
    case ENG_GGUF_ARRAY:
        return rd_array(r, v, depth);
    default:
        break;
    }
    size_t sz = eng_gguf_vtype_size(type);
    if ((err = rd_bytes(r, b, sz, "metadata value"))) return err;
    switch (type) {
    case ENG_GGUF_U8:
        v->v.u64 = b[0];
        break;
    case ENG_GGUF_BOOL:
        if (b[0] > 1)
            return eng_fail(ENG_EFORMAT, "%s: bool value is %u, not 0 or 1", r->label, b[0]);
        v->v.u64 = b[0];
        break;
    case ENG_GGUF_I8:
        v->v.i64 = (int8_t)b[0];
        break;
    case ENG_GGUF_U16: {
        uint16_t x;
        memcpy(&x, b, 2);
        v->v.u64 = x;
        break;
    }
    case ENG_GGUF_I16: {
        int16_t x;
        memcpy(&x, b, 2);
        v->v.i64 = x;
        break;
    }
    case ENG_GGUF_U32: {
        uint32_t x;
        memcpy(&x, b, 4);
        v->v.u64 = x;
        break;
    }
    case ENG_GGUF_I32: {
        int32_t x;
        memcpy(&x, b, 4);
        v->v.i64 = x;
        break;
    }
    case ENG_GGUF_F32: {
        float x;
        memcpy(&x, b, 4);
        v->v.f64 = x;
        break;
    }
    case ENG_GGUF_U64: {
        uint64_t x;
        memcpy(&x, b, 8);
        v->v.u64 = x;
        break;
    }
    case ENG_GGUF_I64: {
        int64_t x;
        memcpy(&x, b, 8);
        v->v.i64 = x;
        break;
    }
    case ENG_GGUF_F64: {
        double x;
        memcpy(&x, b, 8);
        v->v.f64 = x;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- lookup ---- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Inserts tensor i; returns the index of an existing tensor with the same name, or -1. */
static int64_t hash_insert(struct eng_gguf *g, int64_t i) {
    uint64_t h = hash_str(g->tensors[i].name) & (uint64_t)(g->hash_cap - 1);
    while (g->hash[h] >= 0) {
        if (strcmp(g->tensors[g->hash[h]].name, g->tensors[i].name) == 0) return g->hash[h];
        h = (h + 1) & (uint64_t)(g->hash_cap - 1);
    }
    g->hash[h] = i;
    return -1;
}

const struct eng_tensor *eng_gguf_find_tensor(const struct eng_gguf *g, const char *name) {
    if (!g->hash_cap) return NULL;
    uint64_t h = hash_str(name) & (uint64_t)(g->hash_cap - 1);
    while (g->hash[h] >= 0) {
        if (strcmp(g->tensors[g->hash[h]].name, name) == 0) return &g->tensors[g->hash[h]];
        h = (h + 1) & (uint64_t)(g->hash_cap - 1);
    }
    return NULL;
}

/* ---- parse ---- */

static int parse_tensor_infos(struct eng_gguf *g, struct rd *r) {
    int err;
    /* A tensor info is at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes. */
    if ((uint64_t)g->n_tensors > (r->size - r->off) / 32)
        return eng_fail(ENG_EFORMAT, "%s: %lld tensors cannot fit in the file", r->label,
                        (long long)g->n_tensors);
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*g->tensors));
    if (!g->tensors) return eng_fail(ENG_ENOMEM, "%s: out of memory for tensor infos", r->label);
    g->hash_cap = 16;
    while (g->hash_cap < 2 * g->n_tensors) g->hash_cap *= 2;
    g->hash = malloc((size_t)g->hash_cap * sizeof(*g->hash));
    if (!g->hash) return eng_fail(ENG_ENOMEM, "%s: out of memory for tensor index", r->label);
    for (int64_t i = 0; i < g->hash_cap; i++) g->hash[i] = -1;

    /* First pass: total name bytes, so names live in one allocation. */
    size_t start = r->off, names_len = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        uint64_t len;
        uint32_t n_dims;
        if ((err = rd_u64(r, &len, "tensor name length"))) return err;
        if (len == 0 || len > GGUF_MAX_NAME)
            return eng_fail(ENG_EFORMAT,
                            "%s: tensor %lld has a name of length %llu (1..%d allowed)", r->label,
                            (long long)i, (unsigned long long)len, GGUF_MAX_NAME);
        if ((err = need(r, len, "tensor name"))) return err;
        r->off += len;
        names_len += len + 1;
        if ((err = rd_u32(r, &n_dims, "tensor dimension count"))) return err;
        if (n_dims < 1 || n_dims > ENG_GGUF_MAX_DIMS)
            return eng_fail(ENG_EFORMAT, "%s: tensor %lld has %u dimensions (1..%d allowed)",
                            r->label, (long long)i, n_dims, ENG_GGUF_MAX_DIMS);
        if ((err = need(r, 8ull * n_dims + 12, "tensor shape, type and offset"))) return err;
        r->off += 8ull * n_dims + 12;
    }
    g->names = malloc(names_len ? names_len : 1);
    if (!g->names) return eng_fail(ENG_ENOMEM, "%s: out of memory for tensor names", r->label);

    r->off = start;
    char *np = g->names;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct eng_tensor *t = &g->tensors[i];
        uint64_t len, off;
        uint32_t n_dims, type;
        rd_u64(r, &len, "tensor name length");
        memcpy(np, r->p + r->off, len);
        np[len] = 0;
        r->off += len;
        t->name = np;
        np += len + 1;
        if (strlen(t->name) != len)
            return eng_fail(ENG_EFORMAT, "%s: tensor %lld has a NUL byte in its name", r->label,
                            (long long)i);
        rd_u32(r, &n_dims, "tensor dimension count");
        t->n_dims = (int)n_dims;
        uint64_t nelem = 1;
        for (int d = 0; d < ENG_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            rd_u64(r, &ne, "tensor dimension");
            if (ne > (uint64_t)INT64_MAX / 2 || (ne && nelem > (uint64_t)INT64_MAX / 2 / ne))
                return eng_fail(ENG_EFORMAT, "%s: tensor '%s' has an overflowing shape", r->label,
                                t->name);
            t->ne[d] = (int64_t)ne;
            nelem *= ne;
        }
        rd_u32(r, &type, "tensor type");
        rd_u64(r, &off, "tensor offset");
        int64_t blck;
        size_t tsize;
        if (eng_type_block_info((int)type, &blck, &tsize) != 0)
            return eng_fail(ENG_EFORMAT, "%s: tensor '%s' has unknown type id %u", r->label,
                            t->name, type);
        t->type = (enum eng_type)type;
        if (t->ne[0] % blck)
            return eng_fail(ENG_EFORMAT,
                            "%s: tensor '%s' row of %lld elements is not a multiple of the %s "
                            "block size %lld",
                            r->label, t->name, (long long)t->ne[0], eng_type_name((int)type),
                            (long long)blck);
        uint64_t nbytes = nelem / (uint64_t)blck; /* blocks; nelem < 2^62 */
        if (nbytes > SIZE_MAX / tsize)
            return eng_fail(ENG_EFORMAT, "%s: tensor '%s' is too large", r->label, t->name);
        t->nbytes = (size_t)nbytes * tsize;
        t->offset = off;
        int64_t dup = hash_insert(g, i);
        if (dup >= 0)
            return eng_fail(ENG_EFORMAT, "%s: tensor name '%s' appears twice", r->label, t->name);
    }
    return 0;
}

static int parse(struct eng_gguf *g) {
    struct rd r = {g->base, g->size, 0, g->path};
    char magic[4];
    uint64_t n_tensors, n_kv;
    int err;
    if ((err = rd_bytes(&r, magic, 4, "magic"))) return err;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return eng_fail(ENG_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
    if ((err = rd_u32(&r, &g->version, "version"))) return err;
    if (g->version == 1)
        return eng_fail(ENG_EUNSUPPORTED, "%s: GGUF version 1 is obsolete; re-convert the model",
                        g->path);
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0)
            return eng_fail(ENG_EUNSUPPORTED, "%s: big-endian GGUF files are not supported",
                            g->path);
        return eng_fail(ENG_EUNSUPPORTED, "%s: unsupported GGUF version %u", g->path, g->version);
    }
    if ((err = rd_u64(&r, &n_tensors, "tensor count"))) return err;
    if ((err = rd_u64(&r, &n_kv, "metadata count"))) return err;
    /* A metadata entry is at least 8 (key len) + 1 (key) + 4 (type) + 1 bytes. */
    if (n_kv > (r.size - r.off) / 14)
        return eng_fail(ENG_EFORMAT, "%s: %llu metadata entries cannot fit in the file", g->path,
                        (unsigned long long)n_kv);
    if (n_tensors > (uint64_t)INT64_MAX)
        return eng_fail(ENG_EFORMAT, "%s: %llu tensors: the count overflows", g->path,
                        (unsigned long long)n_tensors);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
    if (!g->kv) return eng_fail(ENG_ENOMEM, "%s: out of memory for metadata", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        struct eng_gguf_kv *kv = &g->kv[i];
        uint32_t type;
        if ((err = rd_str(&r, &kv->key, "metadata key"))) return err;
        g->n_kv = (int64_t)i + 1; /* owned from here on */
        kv->val.type = ENG_GGUF_U8;
        if (kv->key.len == 0 || strlen(kv->key.s) != kv->key.len)
            return eng_fail(ENG_EFORMAT, "%s: metadata key %llu is empty or contains NUL", g->path,
                            (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key.s, kv->key.s) == 0)
                return eng_fail(ENG_EFORMAT, "%s: metadata key '%s' appears twice", g->path,
                                kv->key.s);
        if ((err = rd_u32(&r, &type, "metadata value type"))) return err;
        if (type >= ENG_GGUF_VTYPE_COUNT)
            return eng_fail(ENG_EFORMAT, "%s: metadata '%s' has unknown value type %u", g->path,
                            kv->key.s, type);
        if ((err = rd_value(&r, (enum eng_gguf_vtype)type, &kv->val, 0))) return err;
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct eng_gguf_value *al = eng_gguf_get(g, "general.alignment");
    if (al) {
        if (al->type != ENG_GGUF_U32 || al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)) ||
            al->v.u64 > (1u << 20))
            return eng_fail(ENG_EFORMAT,
                            "%s: general.alignment must be a u32 power of two up to 1 MiB",
                            g->path);
        g->alignment = (size_t)al->v.u64;
    }

    g->n_tensors = (int64_t)n_tensors;
    if ((err = parse_tensor_infos(g, &r))) return err;

    size_t pad = (g->alignment - r.off % g->alignment) % g->alignment;
    g->data_offset = r.off + pad;
    if (g->n_tensors > 0 && g->data_offset > g->size)
        return eng_fail(ENG_EFORMAT, "%s: truncated before the tensor data", g->path);
    size_t data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct eng_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return eng_fail(ENG_EFORMAT, "%s: tensor '%s' offset %llu is not aligned to %zu",
                            g->path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return eng_fail(ENG_EFORMAT,
                            "%s: tensor '%s' (%zu bytes at data offset %llu) extends past the "
                            "end of the file (truncated?)",
                            g->path, t->name, t->nbytes, (unsigned long long)t->offset);
        t->data = g->base + g->data_offset + t->offset;
    }
    return 0;
}

static struct eng_gguf *open_common(struct eng_gguf *g) {
    if (parse(g) != 0) {
        eng_gguf_close(g);
        return NULL;
    }
    return g;
}

struct eng_gguf *eng_gguf_open(const char *path) {
    struct eng_gguf *g = calloc(1, sizeof(*g));
    if (!g) {
        eng_fail(ENG_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    g->path = strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        eng_fail(ENG_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto err;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        eng_fail(ENG_EIO, "%s: not a regular file", path);
        close(fd);
        goto err;
    }
    g->size = (size_t)st.st_size;
    if (g->size == 0) {
        eng_fail(ENG_EFORMAT, "%s: empty file", path);
        close(fd);
        goto err;
    }
    void *p = mmap(NULL, g->size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        eng_fail(ENG_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto err;
    }
    /* Huge pages for the weight stream: parts of the file not yet in the page cache are read
     * into 2 MiB folios and mapped by one page-table entry each. With 4 KiB entries every
     * token's pass over the weights walks one page table per 4 KiB; in a virtual machine with
     * shadow page tables such passes ran at 4-9 GB/s against 25-35 with 2 MiB entries (one
     * thread reading L1B F16). A kernel or file system without large folios ignores it. */
    (void)madvise(p, g->size, MADV_HUGEPAGE);
    g->base = p;
    g->mapped = true;
    return open_common(g);
err:
    eng_gguf_close(g);
    return NULL;
}

struct eng_gguf *eng_gguf_open_memory(const void *buf, size_t size, const char *label) {
    struct eng_gguf *g = calloc(1, sizeof(*g));
    if (!g) {
        eng_fail(ENG_ENOMEM, "%s: out of memory", label);
        return NULL;
    }
    g->path = strdup(label ? label : "<memory>");
    g->base = buf;
    g->size = size;
    return open_common(g);
}

void eng_gguf_close(struct eng_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free((void *)g->kv[i].key.s);
        value_free(&g->kv[i].val);
    }
    free(g->kv);
    free(g->tensors);
    free(g->names);
    free(g->hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

/* ---- accessors ---- */

uint32_t eng_gguf_version(const struct eng_gguf *g) {
    return g->version;
}
size_t eng_gguf_alignment(const struct eng_gguf *g) {
    return g->alignment;
}
size_t eng_gguf_file_size(const struct eng_gguf *g) {
    return g->size;
}
size_t eng_gguf_data_offset(const struct eng_gguf *g) {
    return g->data_offset;
}
const char *eng_gguf_path(const struct eng_gguf *g) {
    return g->path;
}
int64_t eng_gguf_n_kv(const struct eng_gguf *g) {
    return g->n_kv;
}
int64_t eng_gguf_n_tensors(const struct eng_gguf *g) {
    return g->n_tensors;
}

const struct eng_gguf_kv *eng_gguf_kv_at(const struct eng_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const struct eng_tensor *eng_gguf_tensor_at(const struct eng_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

int64_t eng_gguf_find_key(const struct eng_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key.s, key) == 0) return i;
    return -1;
}

const struct eng_gguf_value *eng_gguf_get(const struct eng_gguf *g, const char *key) {
    int64_t i = eng_gguf_find_key(g, key);
    return i >= 0 ? &g->kv[i].val : NULL;
}

static bool is_unsigned(enum eng_gguf_vtype t) {
    return t == ENG_GGUF_U8 || t == ENG_GGUF_U16 || t == ENG_GGUF_U32 || t == ENG_GGUF_U64;
}

static bool is_signed(enum eng_gguf_vtype t) {
    return t == ENG_GGUF_I8 || t == ENG_GGUF_I16 || t == ENG_GGUF_I32 || t == ENG_GGUF_I64;
}

int eng_gguf_get_i64(const struct eng_gguf *g, const char *key, int64_t *out) {
    const struct eng_gguf_value *v = eng_gguf_get(g, key);
    if (!v) return ENG_ENOTFOUND;
    if (is_unsigned(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX)
            return eng_fail(ENG_EFORMAT, "%s: %s is out of range", g->path, key);
        *out = (int64_t)v->v.u64;
        return 0;
    }
    if (is_signed(v->type)) {
        *out = v->v.i64;
        return 0;
    }
    return eng_fail(ENG_EFORMAT, "%s: %s is a %s, expected an integer", g->path, key,
                    eng_gguf_vtype_name(v->type));
}

int eng_gguf_get_u32(const struct eng_gguf *g, const char *key, uint32_t *out) {
    int64_t x;
    int err = eng_gguf_get_i64(g, key, &x);
    if (err) return err;
    if (x < 0 || x > UINT32_MAX)
        return eng_fail(ENG_EFORMAT, "%s: %s = %lld is out of range", g->path, key, (long long)x);
    *out = (uint32_t)x;
    return 0;
}

int eng_gguf_get_f32(const struct eng_gguf *g, const char *key, float *out) {
    const struct eng_gguf_value *v = eng_gguf_get(g, key);
    if (!v) return ENG_ENOTFOUND;
    if (v->type == ENG_GGUF_F32 || v->type == ENG_GGUF_F64) {
        *out = (float)v->v.f64;
        return 0;
    }
    int64_t x;
    if (eng_gguf_get_i64(g, key, &x) == 0) {
        *out = (float)x;
        return 0;
    }
    return eng_fail(ENG_EFORMAT, "%s: %s is a %s, expected a number", g->path, key,
                    eng_gguf_vtype_name(v->type));
}

int eng_gguf_get_bool(const struct eng_gguf *g, const char *key, bool *out) {
    const struct eng_gguf_value *v = eng_gguf_get(g, key);
    if (!v) return ENG_ENOTFOUND;
    if (v->type != ENG_GGUF_BOOL)
        return eng_fail(ENG_EFORMAT, "%s: %s is a %s, expected a bool", g->path, key,
                        eng_gguf_vtype_name(v->type));
    *out = v->v.u64 != 0;
    return 0;
}

const char *eng_gguf_get_str(const struct eng_gguf *g, const char *key) {
    const struct eng_gguf_value *v = eng_gguf_get(g, key);
    return v && v->type == ENG_GGUF_STRING ? v->v.str.s : NULL;
}

int64_t eng_gguf_get_arr(const struct eng_gguf *g, const char *key, int elem_type,
                         const void **data) {
    const struct eng_gguf_value *v = eng_gguf_get(g, key);
    if (!v || v->type != ENG_GGUF_ARRAY) return -1;
    if (elem_type >= 0 && (int)v->v.arr.elem_type != elem_type) return -1;
    *data = v->v.arr.data;
    return (int64_t)v->v.arr.n;
}
