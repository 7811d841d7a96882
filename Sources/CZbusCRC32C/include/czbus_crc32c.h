#ifndef CZBUS_CRC32C_H
#define CZBUS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has a CRC-32C instruction that `czbus_crc32c_update` uses (SSE 4.2 on x86-64).
int czbus_crc32c_hardware_available(void);

/// Folds `count` bytes at `bytes` into the running, pre-inverted CRC-32C register `state` with the CPU's CRC-32C
/// instruction. Only call it when `czbus_crc32c_hardware_available()` returned non-zero.
uint32_t czbus_crc32c_update(uint32_t state, const void *bytes, size_t count);

#endif
