#ifndef SLUICE_SCAN_H
#define SLUICE_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* Length of the run at the start of `bytes` (at most `count`) in which no byte is a quote, a backslash or below
   0x20, and, when `ascii_only` is set, none is 0x80 or above. SSE2, sixteen bytes at a time. */
size_t sluice_json_plain_run(const uint8_t *bytes, size_t count, int ascii_only);

/* Offset of the first NUL byte, or `count` when there is none (memchr). */
size_t sluice_first_nul(const uint8_t *bytes, size_t count);

#endif
