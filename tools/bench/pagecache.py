"""Page-cache state of the benchmarked model files.

The engine maps a model with MADV_HUGEPAGE (engine/gguf.c): the parts of the file it reads from
disk come into 2 MiB page-cache folios, mapped by one page-table entry each. Parts already cached
keep the folios that put them there (the writes of whatever wrote the file, a `cp`, an earlier
reader), often 4 KiB ones, and the weight stream then walks a page table every 4 KiB, which on
some hosts (virtual machines with shadow page tables) costs more than half of the bandwidth.
Every benchmark starts its model from the state after a reboot: not cached; the warm-up run
reads it in."""

import os


def drop(path):
    """Drops path's clean pages from the page cache (pages another process maps stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
