/*
 * gguf_write.c — the GGUF writer: collects metadata (deep copies) and tensors (borrowed data),
 * then writes GGUF v3 (or v2) atomically: temporary file, fsync, rename, fsync of the directory.
 * It does not convert or quantize tensors; callers hand in bytes of the declared type.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct wtensor {
    char *name;
    enum eng_type type;
    int n_dims;
    int64_t ne[ENG_GGUF_MAX_DIMS];
    size_t nbytes;
    const void *data; /* borrowed; NULL writes zeros */
};

struct out {
    FILE *f;
    uint64_t off;
    bool failed;
};

struct eng_gguf_writer {
    uint32_t version;
    int64_t n_kv, cap_kv;
    struct eng_gguf_kv *kv;
    int64_t n_tensors, cap_tensors;
    struct wtensor *tensors;
    /* a write in progress (begin .. finish) */
    struct out stream;
    char *tmp_path, *dst_path;
    size_t alignment;
    int64_t next_tensor;
};

struct eng_gguf_writer *eng_gguf_writer_new(void) {
    struct eng_gguf_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        eng_fail(ENG_ENOMEM, "out of memory");
        return NULL;
    }
    w->version = 3;
    return w;
}

static void value_clear(struct eng_gguf_value *v) {
    if (v->type == ENG_GGUF_STRING) {
        free((void *)v->v.str.s);
    } else if (v->type == ENG_GGUF_ARRAY) {
        if (v->v.arr.elem_type == ENG_GGUF_STRING) {
            struct eng_gguf_str *s = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)s[i].s);
        } else if (v->v.arr.elem_type == ENG_GGUF_ARRAY) {
            struct eng_gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) value_clear(&a[i]);
        }
        free(v->v.arr.data);
    }
    memset(v, 0, sizeof(*v));
}

void eng_gguf_writer_free(struct eng_gguf_writer *w) {
    if (!w) return;
    eng_gguf_writer_abort(w);
    for (int64_t i = 0; i < w->n_kv; i++) {
        free((void *)w->kv[i].key.s);
        value_clear(&w->kv[i].val);
    }
    free(w->kv);
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

int eng_gguf_writer_set_version(struct eng_gguf_writer *w, uint32_t version) {
    if (version != 2 && version != 3) return eng_fail(ENG_EINVAL, "GGUF version must be 2 or 3");
    w->version = version;
    return 0;
}

static char *dup_bytes(const char *s, uint64_t len) {
    char *c = malloc(len + 1);
    if (!c) return NULL;
    memcpy(c, s, len);
    c[len] = 0;
    return c;
}

/* Deep copy of src into dst. */
static int value_copy(struct eng_gguf_value *dst, const struct eng_gguf_value *src) {
    memset(dst, 0, sizeof(*dst));
    dst->type = src->type;
    if (src->type == ENG_GGUF_STRING) {
        dst->v.str.s = dup_bytes(src->v.str.s, src->v.str.len);
        dst->v.str.len = src->v.str.len;
        return dst->v.str.s ? 0 : ENG_ENOMEM;
    }
    if (src->type != ENG_GGUF_ARRAY) {
        dst->v = src->v;
        return 0;
    }
    enum eng_gguf_vtype et = src->v.arr.elem_type;
    uint64_t n = src->v.arr.n;
    size_t esize = eng_gguf_vtype_size(et);
    size_t slot = esize ? esize
                        : (et == ENG_GGUF_STRING ? sizeof(struct eng_gguf_str)
                                                 : sizeof(struct eng_gguf_value));
    dst->v.arr.elem_type = et;
    dst->v.arr.data = calloc(n ? n : 1, slot);
    if (!dst->v.arr.data) return ENG_ENOMEM;
    if (esize) {
        if (n) memcpy(dst->v.arr.data, src->v.arr.data, n * esize);
        dst->v.arr.n = n;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (et == ENG_GGUF_STRING) {
            const struct eng_gguf_str *s = &((const struct eng_gguf_str *)src->v.arr.data)[i];
            struct eng_gguf_str *d = &((struct eng_gguf_str *)dst->v.arr.data)[i];
            d->s = dup_bytes(s->s, s->len);
            d->len = s->len;
            if (!d->s) return ENG_ENOMEM;
        } else {
            int err = value_copy(&((struct eng_gguf_value *)dst->v.arr.data)[i],
                                 &((const struct eng_gguf_value *)src->v.arr.data)[i]);
            if (err) return err;
        }
        dst->v.arr.n = i + 1;
    }
    return 0;
}

int eng_gguf_set_value(struct eng_gguf_writer *w, const char *key,
                       const struct eng_gguf_value *val) {
    struct eng_gguf_value copy;
    if (value_copy(&copy, val) != 0) {
        value_clear(&copy);
        return eng_fail(ENG_ENOMEM, "out of memory setting %s", key);
    }
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key.s, key) == 0) {
            value_clear(&w->kv[i].val);
            w->kv[i].val = copy;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        void *p = realloc(w->kv, (size_t)cap * sizeof(*w->kv));
        if (!p) {
            value_clear(&copy);
            return eng_fail(ENG_ENOMEM, "out of memory setting %s", key);
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    struct eng_gguf_kv *kv = &w->kv[w->n_kv];
    kv->key.s = strdup(key);
    kv->key.len = strlen(key);
    if (!kv->key.s) {
        value_clear(&copy);
        return eng_fail(ENG_ENOMEM, "out of memory setting %s", key);
    }
    kv->val = copy;
    w->n_kv++;
    return 0;
}

int eng_gguf_writer_remove(struct eng_gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key.s, key) == 0) {
            free((void *)w->kv[i].key.s);
            value_clear(&w->kv[i].val);
            memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - i - 1) * sizeof(*w->kv));
            w->n_kv--;
            return 0;
        }
    }
    return ENG_ENOTFOUND;
}

static int set_scalar(struct eng_gguf_writer *w, const char *key, enum eng_gguf_vtype t, uint64_t u,
                      int64_t i, double f) {
    struct eng_gguf_value v = {.type = t};
    if (t == ENG_GGUF_F32 || t == ENG_GGUF_F64)
        v.v.f64 = f;
    else if (t == ENG_GGUF_I8 || t == ENG_GGUF_I16 || t == ENG_GGUF_I32 || t == ENG_GGUF_I64)
        v.v.i64 = i;
    else
        v.v.u64 = u;
    return eng_gguf_set_value(w, key, &v);
}

int eng_gguf_set_u32(struct eng_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, ENG_GGUF_U32, v, 0, 0);
}
int eng_gguf_set_i32(struct eng_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, ENG_GGUF_I32, 0, v, 0);
}
int eng_gguf_set_u64(struct eng_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, ENG_GGUF_U64, v, 0, 0);
}
int eng_gguf_set_f32(struct eng_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, ENG_GGUF_F32, 0, 0, v);
}
int eng_gguf_set_bool(struct eng_gguf_writer *w, const char *key, bool v) {
    return set_scalar(w, key, ENG_GGUF_BOOL, v ? 1 : 0, 0, 0);
}

int eng_gguf_set_str(struct eng_gguf_writer *w, const char *key, const char *s) {
    struct eng_gguf_value v = {.type = ENG_GGUF_STRING};
    v.v.str.s = s;
    v.v.str.len = strlen(s);
    return eng_gguf_set_value(w, key, &v);
}

int eng_gguf_set_arr(struct eng_gguf_writer *w, const char *key, enum eng_gguf_vtype elem_type,
                     const void *data, uint64_t n) {
    if (!eng_gguf_vtype_size(elem_type))
        return eng_fail(ENG_EINVAL, "%s: eng_gguf_set_arr takes numeric element types", key);
    struct eng_gguf_value v = {.type = ENG_GGUF_ARRAY};
    v.v.arr.elem_type = elem_type;
    v.v.arr.n = n;
    v.v.arr.data = (void *)data;
    return eng_gguf_set_value(w, key, &v);
}

int eng_gguf_set_arr_str(struct eng_gguf_writer *w, const char *key, const char *const *s,
                         uint64_t n) {
    struct eng_gguf_str *tmp = calloc(n ? n : 1, sizeof(*tmp));
    if (!tmp) return eng_fail(ENG_ENOMEM, "out of memory setting %s", key);
    for (uint64_t i = 0; i < n; i++) {
        tmp[i].s = s[i];
        tmp[i].len = strlen(s[i]);
    }
    struct eng_gguf_value v = {.type = ENG_GGUF_ARRAY};
    v.v.arr.elem_type = ENG_GGUF_STRING;
    v.v.arr.n = n;
    v.v.arr.data = tmp;
    int err = eng_gguf_set_value(w, key, &v);
    free(tmp);
    return err;
}

int eng_gguf_add_tensor(struct eng_gguf_writer *w, const char *name, enum eng_type type, int n_dims,
                        const int64_t *ne, const void *data) {
    int64_t blck;
    size_t tsize;
    if (w->stream.f)
        return eng_fail(ENG_EINVAL, "tensor %s added after the header was written", name);
    if (n_dims < 1 || n_dims > ENG_GGUF_MAX_DIMS)
        return eng_fail(ENG_EINVAL, "tensor %s: %d dimensions", name, n_dims);
    if (eng_type_block_info((int)type, &blck, &tsize) != 0)
        return eng_fail(ENG_EINVAL, "tensor %s: unknown type %d", name, (int)type);
    if (strlen(name) == 0 || strlen(name) > 256)
        return eng_fail(ENG_EINVAL, "tensor name '%s' must be 1..256 bytes", name);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return eng_fail(ENG_EINVAL, "tensor %s added twice", name);
    int64_t nelem = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return eng_fail(ENG_EINVAL, "tensor %s: negative dimension", name);
        nelem *= ne[d];
    }
    if (ne[0] % blck)
        return eng_fail(ENG_EINVAL, "tensor %s: row of %lld is not a multiple of %lld", name,
                        (long long)ne[0], (long long)blck);
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        void *p = realloc(w->tensors, (size_t)cap * sizeof(*w->tensors));
        if (!p) return eng_fail(ENG_ENOMEM, "out of memory adding %s", name);
        w->tensors = p;
        w->cap_tensors = cap;
    }
    struct wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    if (!t->name) return eng_fail(ENG_ENOMEM, "out of memory adding %s", name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < ENG_GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = (size_t)(nelem / blck) * tsize;
    t->data = data;
    w->n_tensors++;
    return 0;
}

/* ---- serialisation ---- */

static void put(struct out *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->failed = true;
    o->off += n;
}

static void put_u32(struct out *o, uint32_t v) {
    put(o, &v, 4);
}
static void put_u64(struct out *o, uint64_t v) {
    put(o, &v, 8);
}

static void put_str(struct out *o, const char *s, uint64_t len) {
    put_u64(o, len);
    put(o, s, len);
}

static void put_value(struct out *o, const struct eng_gguf_value *v, bool with_type) {
    if (with_type) put_u32(o, (uint32_t)v->type);
    uint8_t b[8];
    switch (v->type) {
    case ENG_GGUF_STRING:
        put_str(o, v->v.str.s, v->v.str.len);
        return;
    case ENG_GGUF_ARRAY: {
        enum eng_gguf_vtype et = v->v.arr.elem_type;
        put_u32(o, (uint32_t)et);
        put_u64(o, v->v.arr.n);
        size_t esize = eng_gguf_vtype_size(et);
        if (esize) {
            put(o, v->v.arr.data, esize * v->v.arr.n);
        } else if (et == ENG_GGUF_STRING) {
            const struct eng_gguf_str *s = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_str(o, s[i].s, s[i].len);
        } else {
            const struct eng_gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_value(o, &a[i], false);
        }
        return;
    }
    case ENG_GGUF_U8:
    case ENG_GGUF_BOOL:
        b[0] = (uint8_t)v->v.u64;
        put(o, b, 1);
        return;
    case ENG_GGUF_I8:
        b[0] = (uint8_t)(int8_t)v->v.i64;
        put(o, b, 1);
        return;
    case ENG_GGUF_U16: {
        uint16_t x = (uint16_t)v->v.u64;
        put(o, &x, 2);
        return;
    }
    case ENG_GGUF_I16: {
        int16_t x = (int16_t)v->v.i64;
        put(o, &x, 2);
        return;
    }
    case ENG_GGUF_U32: {
        uint32_t x = (uint32_t)v->v.u64;
        put(o, &x, 4);
        return;
    }
    case ENG_GGUF_I32: {
        int32_t x = (int32_t)v->v.i64;
        put(o, &x, 4);
        return;
    }
    case ENG_GGUF_F32: {
        float x = (float)v->v.f64;
        put(o, &x, 4);
        return;
    }
    case ENG_GGUF_U64:
        put(o, &v->v.u64, 8);
        return;
    case ENG_GGUF_I64:
        put(o, &v->v.i64, 8);
        return;
    case ENG_GGUF_F64:
        put(o, &v->v.f64, 8);
        return;
    default:
        o->failed = true;
        return;
    }
}

static void put_pad(struct out *o, size_t alignment) {
    static const uint8_t zeros[64];
    size_t pad = (alignment - o->off % alignment) % alignment;
    while (pad) {
        size_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);
        put(o, zeros, n);
        pad -= n;
    }
}

static void put_zeros(struct out *o, size_t n) {
    static const uint8_t zeros[4096];
    while (n) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        put(o, zeros, k);
        n -= k;
    }
}

/* fsync the directory holding path so the rename is durable. */
static void sync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int eng_gguf_writer_begin(struct eng_gguf_writer *w, const char *path) {
    if (w->stream.f) return eng_fail(ENG_EINVAL, "%s: a write is already in progress", path);
    size_t alignment = 32;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key.s, "general.alignment") == 0) {
            const struct eng_gguf_value *v = &w->kv[i].val;
            if (v->type != ENG_GGUF_U32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))
                return eng_fail(ENG_EINVAL, "general.alignment must be a u32 power of two");
            alignment = (size_t)v->v.u64;
        }
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32), *dst = strdup(path);
    if (!tmp || !dst) {
        free(tmp);
        free(dst);
        return eng_fail(ENG_ENOMEM, "out of memory");
    }
    snprintf(tmp, plen + 32, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        free(dst);
        return eng_fail(ENG_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    w->stream = (struct out){f, 0, false};
    w->tmp_path = tmp;
    w->dst_path = dst;
    w->alignment = alignment;
    w->next_tensor = 0;
    struct out *o = &w->stream;
    put(o, "GGUF", 4);
    put_u32(o, w->version);
    put_u64(o, (uint64_t)w->n_tensors);
    put_u64(o, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        put_str(o, w->kv[i].key.s, w->kv[i].key.len);
        put_value(o, &w->kv[i].val, true);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        put_str(o, t->name, strlen(t->name));
        put_u32(o, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(o, (uint64_t)t->ne[d]);
        put_u32(o, (uint32_t)t->type);
        put_u64(o, off);
        off += t->nbytes;
        off += (alignment - off % alignment) % alignment;
    }
    put_pad(o, alignment);
    if (o->failed) {
        eng_gguf_writer_abort(w);
        return eng_fail(ENG_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

int eng_gguf_writer_put(struct eng_gguf_writer *w, const void *data) {
    if (!w->stream.f) return eng_fail(ENG_EINVAL, "no write in progress");
    if (w->next_tensor >= w->n_tensors)
        return eng_fail(ENG_EINVAL, "%s: more tensor data than tensors", w->dst_path);
    const struct wtensor *t = &w->tensors[w->next_tensor++];
    if (data)
        put(&w->stream, data, t->nbytes);
    else
        put_zeros(&w->stream, t->nbytes);
    put_pad(&w->stream, w->alignment);
    if (w->stream.failed) {
        int e = errno;
        int err = eng_fail(ENG_EIO, "%s: write failed: %s", w->dst_path, strerror(e));
        eng_gguf_writer_abort(w);
        return err;
    }
    return 0;
}

void eng_gguf_writer_abort(struct eng_gguf_writer *w) {
    if (w->stream.f) {
        fclose(w->stream.f);
        unlink(w->tmp_path);
    }
    w->stream.f = NULL;
    free(w->tmp_path);
    free(w->dst_path);
    w->tmp_path = w->dst_path = NULL;
}

int eng_gguf_writer_finish(struct eng_gguf_writer *w) {
    if (!w->stream.f) return eng_fail(ENG_EINVAL, "no write in progress");
    if (w->next_tensor != w->n_tensors) {
        int err = eng_fail(ENG_EINVAL, "%s: data for %lld of %lld tensors was written", w->dst_path,
                           (long long)w->next_tensor, (long long)w->n_tensors);
        eng_gguf_writer_abort(w);
        return err;
    }
    int err = 0;
    FILE *f = w->stream.f;
    if (w->stream.failed || fflush(f) != 0 || fsync(fileno(f)) != 0)
        err = eng_fail(ENG_EIO, "%s: write failed: %s", w->dst_path, strerror(errno));
    /* The written pages leave the page cache (they are clean after the fsync): kept, they stay
     * in folios the size of our writes, and a model mapped from them gets 4 KiB page-table
     * entries; read back by the first process to map it, the file comes in 2 MiB folios
     * (gguf.c). Advice only: a failure changes nothing. */
    if (!err) (void)posix_fadvise(fileno(f), 0, 0, POSIX_FADV_DONTNEED);
    w->stream.f = NULL;
    if (fclose(f) != 0 && !err)
        err = eng_fail(ENG_EIO, "%s: close failed: %s", w->dst_path, strerror(errno));
    if (!err && rename(w->tmp_path, w->dst_path) != 0)
        err = eng_fail(ENG_EIO, "%s: rename failed: %s", w->dst_path, strerror(errno));
    if (err)
        unlink(w->tmp_path);
    else
        sync_dir(w->dst_path);
    free(w->tmp_path);
    free(w->dst_path);
    w->tmp_path = w->dst_path = NULL;
    return err;
}

int eng_gguf_writer_write(struct eng_gguf_writer *w, const char *path) {
    int err = eng_gguf_writer_begin(w, path);
    for (int64_t i = 0; !err && i < w->n_tensors; i++)
        err = eng_gguf_writer_put(w, w->tensors[i].data);
    return err ? err : eng_gguf_writer_finish(w);
}
