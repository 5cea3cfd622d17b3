/*
 * error.c — error codes, their strings, and the per-thread detail message.
 */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *eng_strerror(int err) {
    switch (err) {
    case ENG_OK:
        return "success";
    case ENG_EIO:
        return "input/output error";
    case ENG_EFORMAT:
        return "malformed file";
    case ENG_ENOMEM:
        return "out of memory";
    case ENG_EINVAL:
        return "invalid argument";
    case ENG_EUNSUPPORTED:
        return "not supported";
    case ENG_ERANGE:
        return "value out of range";
    case ENG_ENOTFOUND:
        return "not found";
    case ENG_ECANCELED:
        return "cancelled";
    case ENG_EBUSY:
        return "busy";
    default:
        return "unknown error";
    }
}

const char *eng_last_error(void) {
    return last_error;
}

int eng_fail(int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return err;
}
