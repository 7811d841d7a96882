#ifndef CZBUS_SYSTEM_H
#define CZBUS_SYSTEM_H

#include <stddef.h>
#include <sys/types.h>

/// Reads up to `count` bytes at `offset` only from the page cache: like pread(2), but fails with errno EAGAIN
/// instead of waiting for the device when the data is not cached (preadv2 with RWF_NOWAIT, Linux 4.14+). Where the
/// system has no such call, `*supported` is set to 0 and a plain pread(2) is done.
ssize_t czbus_pread_nowait(int descriptor, void *buffer, size_t count, off_t offset, int *supported);

#endif
