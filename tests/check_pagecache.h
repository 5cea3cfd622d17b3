/*
 * check_pagecache.h — what the page-cache tests (check_gguf page_cache, check_model
 * populate_at_load, kv_commits_as_filled) share: a folder in the working directory for their
 * files, because on a tmpfs /tmp pages never leave the page cache, and counts of resident pages
 * (of memory, and of a file in the page cache).
 *
 * The folder is made and removed by an unchecked fixture (wd_dir_make / wd_dir_remove from the
 * suite's own void(void) wrappers), which runs in the runner's process: a test runs in a forked
 * process that exits at a failed assertion without its checked teardown.
 */
#ifndef CHECK_PAGECACHE_H
#define CHECK_PAGECACHE_H

#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Makes a new folder "prefix.<six random characters>" in the working directory (mkdtemp) and
 * puts its name in dir (n bytes); exits when it cannot. */
static inline void wd_dir_make(char *dir, size_t n, const char *prefix) {
    if ((size_t)snprintf(dir, n, "%s.XXXXXX", prefix) >= n || !mkdtemp(dir)) {
        perror("mkdtemp in the working directory");
        exit(1);
    }
}

static inline void wd_dir_remove(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* Resident pages (mincore) of the pages that [p, p + n) touches. */
static inline size_t resident_pages(const void *p, size_t n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(page - 1), hi = (uintptr_t)p + n;
    size_t pages = (hi - lo + page - 1) / page, r = 0;
    unsigned char *vec = malloc(pages ? pages : 1);
    ck_assert_ptr_nonnull(vec);
    ck_assert_int_eq(mincore((void *)lo, hi - lo, vec), 0);
    for (size_t i = 0; i < pages; i++) r += vec[i] & 1;
    free(vec);
    return r;
}

/* Pages of the file at path in the page cache (mincore on a mapping of its own), and in *total
 * how many it has; with drop, then asks the kernel to drop them (pages mapped elsewhere stay). */
static inline size_t cached_pages(const char *path, size_t *total, bool drop) {
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = ((size_t)st.st_size + page - 1) / page;
    size_t r = resident_pages(p, (size_t)st.st_size);
    munmap(p, (size_t)st.st_size);
    if (drop) ck_assert_int_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
    *total = n;
    return r;
}

#endif
