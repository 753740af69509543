#include "sluice_scan.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

size_t sluice_json_plain_run(const uint8_t *bytes, size_t count, int ascii_only) {
    size_t index = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i control = _mm_set1_epi8(0x1F);
    const __m128i zero = _mm_setzero_si128();
    while (index + 16 <= count) {
        __m128i v = _mm_loadu_si128((const __m128i *)(bytes + index));
        __m128i special = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
        if (ascii_only) {
            /* Signed compare: below 0x20, and every byte of 0x80 or above (negative as int8). */
            special = _mm_or_si128(special, _mm_cmplt_epi8(v, space));
        } else {
            /* Unsigned v <= 0x1F: saturating v - 0x1F is zero. */
            special = _mm_or_si128(special, _mm_cmpeq_epi8(_mm_subs_epu8(v, control), zero));
        }
        int mask = _mm_movemask_epi8(special);
        if (mask != 0) return index + (size_t)__builtin_ctz((unsigned)mask);
        index += 16;
    }
#endif
    while (index < count) {
        uint8_t byte = bytes[index];
        if (byte == '"' || byte == '\\' || byte < 0x20 || (ascii_only && byte >= 0x80)) return index;
        index++;
    }
    return index;
}

size_t sluice_first_nul(const uint8_t *bytes, size_t count) {
    const void *hit = count ? memchr(bytes, 0, count) : NULL;
    return hit ? (size_t)((const uint8_t *)hit - bytes) : count;
}
