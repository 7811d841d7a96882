#define _GNU_SOURCE
#include "czbus_system.h"

#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t czbus_pread_nowait(int descriptor, void *buffer, size_t count, off_t offset, int *supported) {
#if defined(__linux__) && defined(RWF_NOWAIT)
    struct iovec vector = { buffer, count };
    ssize_t got = preadv2(descriptor, &vector, 1, offset, RWF_NOWAIT);
    if (got >= 0 || (errno != EOPNOTSUPP && errno != ENOSYS)) {
        *supported = 1;
        return got;
    }
#endif
    // No non-waiting read on this system or file system: a plain read.
    *supported = 0;
    return pread(descriptor, buffer, count, offset);
}
