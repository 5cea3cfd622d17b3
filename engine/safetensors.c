/*
 * safetensors.c — maps and validates .safetensors files; exposes typed views of their tensors.
 *
 * Trust model: the file is hostile. The header length is checked against the file size and a
 * cap, the header must parse as a JSON object (jansson) whose entries all have the exact shape
 * the format defines, and each tensor's byte range must match dtype × shape (computed with
 * overflow checks), lie within the data section and not overlap another. It does not convert
 * or rename anything (cli/cmd_convert.c does).
 */
#include "safetensors.h"

#include "engine.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct eng_st_file {
    char *label;
    const uint8_t *base;
    size_t size;
    bool mapped;
    int n;
    struct eng_st_tensor *t; /* (n), sorted by name */
    char *names;             /* one allocation for every name */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[ENG_ST_DTYPE_COUNT] = {
    [ENG_ST_F64] = {"F64", 8},         [ENG_ST_F32] = {"F32", 4},
    [ENG_ST_F16] = {"F16", 2},         [ENG_ST_BF16] = {"BF16", 2},
    [ENG_ST_I64] = {"I64", 8},         [ENG_ST_I32] = {"I32", 4},
    [ENG_ST_I16] = {"I16", 2},         [ENG_ST_I8] = {"I8", 1},
    [ENG_ST_U8] = {"U8", 1},           [ENG_ST_BOOL] = {"BOOL", 1},
    [ENG_ST_F8_E4M3] = {"F8_E4M3", 1}, [ENG_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *eng_st_dtype_name(enum eng_st_dtype t) {
    return (unsigned)t < ENG_ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

size_t eng_st_dtype_size(enum eng_st_dtype t) {
    return (unsigned)t < ENG_ST_DTYPE_COUNT ? dtypes[t].size : 0;
}

void eng_st_close(struct eng_st_file *f) {
    if (!f) return;
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    free(f->label);
    free(f->t);
    free(f->names);
    free(f);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const struct eng_st_tensor *)a)->name, ((const struct eng_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
    const struct eng_st_tensor *x = *(const struct eng_st_tensor *const *)a;
    const struct eng_st_tensor *y = *(const struct eng_st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Reads one header entry into *t. */
static int parse_entry(struct eng_st_file *f, const char *name, json_t *v, const uint8_t *data,
                       size_t data_size, struct eng_st_tensor *t) {
    const char *L = f->label;
    if (!json_is_object(v))
        return eng_fail(ENG_EFORMAT, "%s: tensor '%s': header entry is not an object", L, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2 || json_object_size(v) != 3)
        return eng_fail(ENG_EFORMAT,
                        "%s: tensor '%s': expected exactly dtype, shape and data_offsets", L, name);
    int d = -1;
    for (int i = 0; i < ENG_ST_DTYPE_COUNT; i++)
        if (!strcmp(json_string_value(dt), dtypes[i].name)) d = i;
    if (d < 0)
        return eng_fail(ENG_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", L, name,
                        json_string_value(dt));
    t->dtype = (enum eng_st_dtype)d;
    size_t nd = json_array_size(shape);
    if (nd > ENG_ST_MAX_DIMS)
        return eng_fail(ENG_EFORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", L, name, nd,
                        ENG_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t n_elem = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(shape, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return eng_fail(ENG_EFORMAT, "%s: tensor '%s': bad dimension", L, name);
        uint64_t dim = (uint64_t)json_integer_value(x);
        if (dim && n_elem > (UINT64_MAX >> 4) / dim)
            return eng_fail(ENG_EFORMAT, "%s: tensor '%s': shape overflows", L, name);
        n_elem *= dim;
        t->shape[i] = (int64_t)dim;
    }
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return eng_fail(ENG_EFORMAT, "%s: tensor '%s': bad data_offsets", L, name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    if (end > data_size)
        return eng_fail(ENG_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] run past the data section "
                        "(%zu bytes)",
                        L, name, (unsigned long long)begin, (unsigned long long)end, data_size);
    if (n_elem * dtypes[d].size != end - begin)
        return eng_fail(ENG_EFORMAT, "%s: tensor '%s': %llu bytes of data for %llu elements of %s",
                        L, name, (unsigned long long)(end - begin), (unsigned long long)n_elem,
                        dtypes[d].name);
    t->n_elem = (int64_t)n_elem;
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

static int parse(struct eng_st_file *f) {
    const char *L = f->label;
    if (f->size < 8) return eng_fail(ENG_EFORMAT, "%s: too short for a safetensors file", L);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->base[i];
    if (hlen > f->size - 8 || hlen > ENG_ST_MAX_HEADER)
        return eng_fail(ENG_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes)", L,
                        (unsigned long long)hlen, f->size);
    if (hlen < 2 || f->base[8] != '{')
        return eng_fail(ENG_EFORMAT, "%s: header is not a JSON object", L);
    json_error_t je;
    json_t *h = json_loadb((const char *)f->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h) return eng_fail(ENG_EFORMAT, "%s: header JSON: %s (byte %d)", L, je.text, je.position);
    int err = 0;
    if (!json_is_object(h)) {
        err = eng_fail(ENG_EFORMAT, "%s: header is not a JSON object", L);
        goto out;
    }
    const uint8_t *data = f->base + 8 + hlen;
    size_t data_size = f->size - 8 - (size_t)hlen;
    size_t n = json_object_size(h), names = 0;
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) names += strlen(key) + 1;
    f->t = calloc(n ? n : 1, sizeof(*f->t));
    f->names = malloc(names ? names : 1);
    if (!f->t || !f->names) {
        err = eng_fail(ENG_ENOMEM, "%s: out of memory", L);
        goto out;
    }
    size_t off = 0;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                err = eng_fail(ENG_EFORMAT, "%s: __metadata__ is not an object", L);
                goto out;
            }
            continue;
        }
        struct eng_st_tensor *t = &f->t[f->n];
        size_t kl = strlen(key);
        memcpy(f->names + off, key, kl + 1);
        t->name = f->names + off;
        off += kl + 1;
        if ((err = parse_entry(f, t->name, v, data, data_size, t))) goto out;
        f->n++;
    }
    /* no two tensors may share bytes */
    const struct eng_st_tensor **by = malloc((size_t)(f->n ? f->n : 1) * sizeof(*by));
    if (!by) {
        err = eng_fail(ENG_ENOMEM, "%s: out of memory", L);
        goto out;
    }
    for (int i = 0; i < f->n; i++) by[i] = &f->t[i];
    qsort(by, (size_t)f->n, sizeof(*by), cmp_begin);
    for (int i = 1; i < f->n; i++) {
        const uint8_t *prev_end = (const uint8_t *)by[i - 1]->data + by[i - 1]->nbytes;
        if (by[i]->nbytes && (const uint8_t *)by[i]->data < prev_end) {
            err = eng_fail(ENG_EFORMAT, "%s: tensors '%s' and '%s' overlap", L, by[i - 1]->name,
                           by[i]->name);
            break;
        }
    }
    free(by);
    if (!err) qsort(f->t, (size_t)f->n, sizeof(*f->t), cmp_name);
out:
    json_decref(h);
    return err;
}

struct eng_st_file *eng_st_open_memory(const void *buf, size_t size, const char *label) {
    struct eng_st_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->label = strdup(label ? label : "safetensors"))) {
        free(f);
        eng_fail(ENG_ENOMEM, "out of memory");
        return NULL;
    }
    f->base = buf;
    f->size = size;
    if (parse(f)) {
        eng_st_close(f);
        return NULL;
    }
    return f;
}

struct eng_st_file *eng_st_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        eng_fail(ENG_EIO, "%s: cannot open: %m", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        eng_fail(ENG_EIO, "%s: not a regular file", path);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *p = size ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    close(fd);
    if (size && p == MAP_FAILED) {
        eng_fail(ENG_EIO, "%s: mmap failed: %m", path);
        return NULL;
    }
    struct eng_st_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->label = strdup(path))) {
        if (p) munmap(p, size);
        free(f);
        eng_fail(ENG_ENOMEM, "out of memory");
        return NULL;
    }
    f->base = p;
    f->size = size;
    f->mapped = p != NULL;
    if (parse(f)) {
        eng_st_close(f);
        return NULL;
    }
    return f;
}

int eng_st_n_tensors(const struct eng_st_file *f) {
    return f->n;
}

const struct eng_st_tensor *eng_st_tensor_at(const struct eng_st_file *f, int i) {
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const struct eng_st_tensor *eng_st_find(const struct eng_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, f->t[mid].name);
        if (!c) return &f->t[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}
