#ifndef SLUICE_SCAN_H
#define SLUICE_SCAN_H

#include <stddef.h>
#include <stdint.h>

/* Length of the run at the start of `bytes` (at most `count`) in which no byte is a quote, a backslash or below
   0x20, and, when `ascii_only` is set, none is 0x80 or above. SSE2, sixteen bytes at a time. */
size_t sluice_json_plain_run(const uint8_t *bytes, size_t count, int ascii_only);

/* Like sluice_json_plain_run with ascii_only, but steps over valid UTF-8 multi-byte sequences (RFC 3629: no
   overlongs, no surrogates, nothing above U+10FFFF) instead of stopping at them. Stops at a quote, a backslash,
   a control byte, or an invalid sequence, in which case *invalid is set to 1. */
size_t sluice_json_plain_run_utf8(const uint8_t *bytes, size_t count, int *invalid);

/* Offset of the first NUL byte, or `count` when there is none (memchr). */
size_t sluice_first_nul(const uint8_t *bytes, size_t count);

/* Counts, over `count` bytes, the lead bytes 0xE3…0xED (CJK and Hangul, U+3000…U+D7FF) into *cjk and the ASCII
   letters and digits into *alnum. SSE2, sixteen bytes at a time. */
void sluice_count_cjk_alnum(const uint8_t *bytes, size_t count, size_t *cjk, size_t *alnum);

/* Whether `bytes` holds a tab or two spaces in a row (a line with whitespace to collapse). SSE2. */
int sluice_has_tab_or_double_space(const uint8_t *bytes, size_t count);

/* Whether `bytes` holds "lorem ipsum", ASCII letters in any case (C4's `"lorem ipsum" in text.lower()`: no other
   character lowercases to one of these letters next to the others). SSE2 finds candidates sixteen at a time. */
int sluice_has_lorem_ipsum(const uint8_t *bytes, size_t count);

/* Length of the run of ASCII letters and digits at the start of `bytes` (at most `count`). SSE2: a word's end
   is found without a branch per byte (whose exit the CPU mispredicts once per word). */
size_t sluice_alnum_run(const uint8_t *bytes, size_t count);

/* The run of ASCII letters and digits at the start of `bytes` (at most `count` bytes) as the quality measurements
   see it: its length, its letters, the longest chain of one byte repeated in it (0 when no byte repeats its
   predecessor, else the chain's length), and `state` fed with its lowercased bytes (FNV-1a style, as
   TextMeasurer.feed). A run shorter than sixteen bytes is measured with SSE2, without a branch per byte. */
uint64_t sluice_ascii_word_run(const uint8_t *bytes, size_t count, uint64_t state, size_t *length, size_t *letters,
                               size_t *longest);

/* Length of the run of ASCII bytes (below 0x80) at the start of `bytes` (at most `count`). SSE2. */
size_t sluice_ascii_run(const uint8_t *bytes, size_t count);

/* Offset of the first byte at or after `bytes` that may start an invisible or line-ending character
   (InvisibleCharacters): a C0 control other than tab and line feed, DEL, or a lead byte 0xC0-0xC2, 0xE1, 0xE2
   or 0xEF; `count` when there is none. SSE2, sixteen bytes at a time. */
size_t sluice_invisible_candidate(const uint8_t *bytes, size_t count);

/* Asks the CPU to start loading the cache line at `address` (for reading; no effect on results). Lookups that
   touch many tables issue all their loads first, so the cache misses overlap instead of following one another. */
static inline void sluice_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
