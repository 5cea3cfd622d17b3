/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader and the model loader: the input is parsed
 * from memory, every metadata value and tensor view is walked, then (through a memfd) handed to
 * eng_model_load, which interprets hyperparameters and checks tensors. Any crash, leak, or
 * sanitizer report is a bug; refusals are expected.
 */
#include "engine.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t walk_value(const struct eng_gguf_value *v) {
    size_t h = v->type;
    if (v->type == ENG_GGUF_STRING)
        return h + v->v.str.len + (v->v.str.len ? (uint8_t)v->v.str.s[0] : 0);
    if (v->type != ENG_GGUF_ARRAY) return h + (size_t)v->v.u64;
    for (uint64_t i = 0; i < v->v.arr.n; i++) {
        if (v->v.arr.elem_type == ENG_GGUF_ARRAY)
            h += walk_value(&((const struct eng_gguf_value *)v->v.arr.data)[i]);
        else if (v->v.arr.elem_type == ENG_GGUF_STRING)
            h += ((const struct eng_gguf_str *)v->v.arr.data)[i].len;
        else
            h += ((const uint8_t *)v->v.arr.data)[i * eng_gguf_vtype_size(v->v.arr.elem_type)];
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct eng_gguf *g = eng_gguf_open_memory(data, size, "fuzz.gguf");
    if (!g) return 0;
    volatile size_t h = 0;
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++) h += walk_value(&eng_gguf_kv_at(g, i)->val);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        if (t->nbytes) h += ((const uint8_t *)t->data)[t->nbytes - 1];
        h += eng_gguf_find_tensor(g, t->name) == t;
    }
    eng_gguf_close(g);

    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        struct eng_model *m = eng_model_load(path, NULL);
        eng_model_free(m);
    }
    close(fd);
    return 0;
}
