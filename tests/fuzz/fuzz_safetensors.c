/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader `edgellm convert` uses: the
 * input is parsed from memory and every tensor view it accepts is walked end to end (name,
 * shape, first and last byte), so an out-of-range offset or a size that disagrees with the shape
 * shows up under AddressSanitizer. Refusals are expected; crashes, leaks and sanitizer reports
 * are bugs.
 */
#include "engine.h"
#include "safetensors.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct eng_st_file *f = eng_st_open_memory(data, size, "fuzz.safetensors");
    if (!f) return 0;
    volatile size_t h = 0;
    for (int i = 0; i < eng_st_n_tensors(f); i++) {
        const struct eng_st_tensor *t = eng_st_tensor_at(f, i);
        h += strlen(t->name) + (size_t)t->n_dims;
        int64_t n = 1;
        for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
        if ((size_t)n * eng_st_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
        if (t->nbytes)
            h += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        if (eng_st_find(f, t->name) != t) __builtin_trap();
    }
    eng_st_close(f);
    return 0;
}
