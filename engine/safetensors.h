/*
 * safetensors.h — reader for Hugging Face .safetensors files (used by `edgellm convert` and its
 * fuzz target). Internal to edgellm; not part of engine.h.
 *
 * Format: u64 little-endian header length N, N bytes of JSON (an object: tensor name →
 * {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * strings), then the data section; offsets are relative to its start.
 */
#ifndef EDGELLM_ENGINE_SAFETENSORS_H
#define EDGELLM_ENGINE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ENG_ST_MAX_DIMS   8
#define ENG_ST_MAX_HEADER (100u << 20) /* bytes of JSON header accepted */

enum eng_st_dtype {
    ENG_ST_F64,
    ENG_ST_F32,
    ENG_ST_F16,
    ENG_ST_BF16,
    ENG_ST_I64,
    ENG_ST_I32,
    ENG_ST_I16,
    ENG_ST_I8,
    ENG_ST_U8,
    ENG_ST_BOOL,
    ENG_ST_F8_E4M3,
    ENG_ST_F8_E5M2,
    ENG_ST_DTYPE_COUNT,
};

struct eng_st_tensor {
    const char *name; /* owned by the file object */
    enum eng_st_dtype dtype;
    int n_dims;
    int64_t shape[ENG_ST_MAX_DIMS]; /* row-major: shape[n_dims-1] is contiguous */
    int64_t n_elem;
    const void *data; /* into the mapping or the caller's buffer */
    size_t nbytes;
};

struct eng_st_file;

/* Maps path read-only and validates it: the header is well-formed JSON of the expected shape,
 * every dtype is known, every shape's byte size equals its data range, ranges lie inside the
 * data section and do not overlap. NULL with eng_last_error() naming the file and the problem.
 * Caller frees with eng_st_close(). */
struct eng_st_file *eng_st_open(const char *path);
/* The same over a caller-owned buffer that must outlive the object (tests, fuzzing). */
struct eng_st_file *eng_st_open_memory(const void *buf, size_t size, const char *label);
void eng_st_close(struct eng_st_file *f);
int eng_st_n_tensors(const struct eng_st_file *f);
const struct eng_st_tensor *eng_st_tensor_at(const struct eng_st_file *f, int i);
/* Tensor by name, NULL if absent. */
const struct eng_st_tensor *eng_st_find(const struct eng_st_file *f, const char *name);
const char *eng_st_dtype_name(enum eng_st_dtype t);
/* Bytes per element of a dtype. */
size_t eng_st_dtype_size(enum eng_st_dtype t);

#endif
