// CRC-32C with the CPU's instruction: the queue store checksums every record it writes and reads, and the table-driven
// Swift fold (kept as the portable path and as the reference in tests) costs several times more per byte.
#include "czbus_crc32c.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>

int czbus_crc32c_hardware_available(void) {
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    return (ecx & bit_SSE4_2) != 0;
}

__attribute__((target("sse4.2")))
uint32_t czbus_crc32c_update(uint32_t state, const void *bytes, size_t count) {
    const unsigned char *pointer = (const unsigned char *)bytes;
    uint64_t crc = state;
    // Byte steps to an 8-byte boundary, then eight bytes per instruction.
    while (count > 0 && ((uintptr_t)pointer & 7) != 0) {
        crc = __builtin_ia32_crc32qi((uint32_t)crc, *pointer++);
        count--;
    }
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, pointer, sizeof word);
        crc = __builtin_ia32_crc32di(crc, word);
        pointer += 8;
        count -= 8;
    }
    while (count > 0) {
        crc = __builtin_ia32_crc32qi((uint32_t)crc, *pointer++);
        count--;
    }
    return (uint32_t)crc;
}

#else

int czbus_crc32c_hardware_available(void) { return 0; }

uint32_t czbus_crc32c_update(uint32_t state, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return state;  // never called: the Swift side uses its own fold when no instruction is available
}

#endif
