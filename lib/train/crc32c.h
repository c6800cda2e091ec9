/* CRC-32C (Castagnoli), the checksum of the checkpoint format (docs/checkpoint-format.md). Internal. */
#ifndef FRCNN_CRC32C_H
#define FRCNN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC-32C over len more bytes. Start with crc = 0; the value returned after the last chunk is the CRC
 * of the concatenation (pre- and post-inversion are done inside). frcnn__crc32c_update(0, "123456789", 9) is
 * 0xE3069283. Uses the SSE4.2 instruction when the CPU has it, slicing-by-8 tables otherwise; both give identical
 * results. Thread-safe. data may be NULL when len is 0. */
uint32_t frcnn__crc32c_update(uint32_t crc, const void *data, size_t len);

/* The portable slicing-by-8 implementation, exposed so tests can compare it with the hardware path. */
uint32_t frcnn__crc32c_update_sw(uint32_t crc, const void *data, size_t len);

#endif /* FRCNN_CRC32C_H */
