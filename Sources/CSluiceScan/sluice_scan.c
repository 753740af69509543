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

size_t sluice_json_plain_run_utf8(const uint8_t *bytes, size_t count, int *invalid) {
    size_t index = 0;
    *invalid = 0;
    for (;;) {
        index += sluice_json_plain_run(bytes + index, count - index, 1);
        if (index >= count) return count;
        if (bytes[index] < 0x80) return index; /* a quote, a backslash or a control byte */
        /* A run of multi-byte characters (Chinese text) is validated here, not one character per ASCII scan. */
        while (index < count && bytes[index] >= 0x80) {
            uint8_t lead = bytes[index];
            if (lead >= 0xE1 && lead <= 0xEC && index + 3 <= count && (bytes[index + 1] & 0xC0) == 0x80 &&
                (bytes[index + 2] & 0xC0) == 0x80) {
                index += 3; /* U+1000…U+CFFF, most of CJK */
                continue;
            }
            size_t length;
            uint8_t lower = 0x80, upper = 0xBF;
            if (lead >= 0xC2 && lead <= 0xDF) {
                length = 2;
            } else if (lead == 0xE0) {
                length = 3;
                lower = 0xA0;
            } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
                length = 3;
            } else if (lead == 0xED) {
                length = 3;
                upper = 0x9F;
            } else if (lead == 0xF0) {
                length = 4;
                lower = 0x90;
            } else if (lead >= 0xF1 && lead <= 0xF3) {
                length = 4;
            } else if (lead == 0xF4) {
                length = 4;
                upper = 0x8F;
            } else {
                *invalid = 1;
                return index;
            }
            if (index + length > count || bytes[index + 1] < lower || bytes[index + 1] > upper ||
                (length >= 3 && (bytes[index + 2] & 0xC0) != 0x80) ||
                (length == 4 && (bytes[index + 3] & 0xC0) != 0x80)) {
                *invalid = 1;
                return index;
            }
            index += length;
        }
    }
}

void sluice_count_cjk_alnum(const uint8_t *bytes, size_t count, size_t *cjk, size_t *alnum) {
    size_t index = 0;
    size_t cjk_total = 0, alnum_total = 0;
#if defined(__SSE2__)
    /* Unsigned range tests as signed compares after a bias of 0x80: (b - lo) < width. */
    const __m128i bias = _mm_set1_epi8((char)0x80);
    const __m128i cjk_lo = _mm_set1_epi8((char)0xE3), cjk_width = _mm_set1_epi8(11);
    const __m128i letter_lo = _mm_set1_epi8(0x61), letter_width = _mm_set1_epi8(26);
    const __m128i digit_lo = _mm_set1_epi8(0x30), digit_width = _mm_set1_epi8(10);
    const __m128i fold = _mm_set1_epi8(0x20);
    while (index + 16 <= count) {
        /* Up to 255 blocks per round, so that byte counters cannot overflow. */
        __m128i cjk_counts = _mm_setzero_si128(), alnum_counts = _mm_setzero_si128();
        size_t rounds = 0;
        while (index + 16 <= count && rounds < 255) {
            __m128i v = _mm_loadu_si128((const __m128i *)(bytes + index));
            __m128i c = _mm_cmplt_epi8(_mm_xor_si128(_mm_sub_epi8(v, cjk_lo), bias), _mm_xor_si128(cjk_width, bias));
            __m128i l = _mm_cmplt_epi8(_mm_xor_si128(_mm_sub_epi8(_mm_or_si128(v, fold), letter_lo), bias), _mm_xor_si128(letter_width, bias));
            __m128i d = _mm_cmplt_epi8(_mm_xor_si128(_mm_sub_epi8(v, digit_lo), bias), _mm_xor_si128(digit_width, bias));
            cjk_counts = _mm_sub_epi8(cjk_counts, c);
            alnum_counts = _mm_sub_epi8(alnum_counts, _mm_or_si128(l, d));
            index += 16;
            rounds++;
        }
        __m128i zero = _mm_setzero_si128();
        __m128i cs = _mm_sad_epu8(cjk_counts, zero), as = _mm_sad_epu8(alnum_counts, zero);
        cjk_total += (size_t)_mm_cvtsi128_si32(cs) + (size_t)_mm_extract_epi16(cs, 4);
        alnum_total += (size_t)_mm_cvtsi128_si32(as) + (size_t)_mm_extract_epi16(as, 4);
    }
#endif
    for (; index < count; index++) {
        uint8_t b = bytes[index];
        cjk_total += (uint8_t)(b - 0xE3) < 11;
        alnum_total += (uint8_t)((b | 0x20) - 0x61) < 26 || (uint8_t)(b - 0x30) < 10;
    }
    *cjk = cjk_total;
    *alnum = alnum_total;
}

int sluice_has_tab_or_double_space(const uint8_t *bytes, size_t count) {
    size_t index = 0;
#if defined(__SSE2__)
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i space = _mm_set1_epi8(' ');
    /* Each block of 16 is compared with itself shifted by one byte (loaded at index + 1). */
    while (index + 17 <= count) {
        __m128i v = _mm_loadu_si128((const __m128i *)(bytes + index));
        __m128i w = _mm_loadu_si128((const __m128i *)(bytes + index + 1));
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_and_si128(_mm_cmpeq_epi8(v, space), _mm_cmpeq_epi8(w, space)));
        if (_mm_movemask_epi8(hit) != 0) return 1;
        index += 16;
    }
#endif
    for (; index < count; index++) {
        if (bytes[index] == '\t') return 1;
        if (bytes[index] == ' ' && index + 1 < count && bytes[index + 1] == ' ') return 1;
    }
    return 0;
}

/* The eleven bytes of "lorem ipsum" at `at`, ASCII letters compared without case. */
static int sluice_lorem_at(const uint8_t *at) {
    static const char pattern[] = "lorem ipsum";
    for (int k = 0; k < 11; k++) {
        uint8_t byte = at[k];
        if (k == 5) {
            if (byte != ' ') return 0;
        } else if ((uint8_t)(byte | 0x20) != (uint8_t)pattern[k]) {
            return 0;
        }
    }
    return 1;
}

int sluice_has_lorem_ipsum(const uint8_t *bytes, size_t count) {
    if (count < 11) return 0;
    size_t last = count - 11; /* the last position a match can start at */
    size_t index = 0;
#if defined(__SSE2__)
    /* Candidates: an 'l' or 'L' with a space five bytes on; each is checked in full. */
    const __m128i lower = _mm_set1_epi8(0x20);
    const __m128i ell = _mm_set1_epi8('l');
    const __m128i space = _mm_set1_epi8(' ');
    while (index + 16 <= last + 1) {
        __m128i starts = _mm_or_si128(_mm_loadu_si128((const __m128i *)(bytes + index)), lower);
        __m128i gaps = _mm_loadu_si128((const __m128i *)(bytes + index + 5));
        unsigned mask = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(starts, ell), _mm_cmpeq_epi8(gaps, space)));
        while (mask) {
            unsigned bit = (unsigned)__builtin_ctz(mask);
            if (sluice_lorem_at(bytes + index + bit)) return 1;
            mask &= mask - 1;
        }
        index += 16;
    }
#endif
    for (; index <= last; index++) {
        if ((bytes[index] | 0x20) == 'l' && sluice_lorem_at(bytes + index)) return 1;
    }
    return 0;
}

#if defined(__SSE2__)
/* Per byte of `v`, 0xFF for an ASCII letter or digit (unsigned "x <= limit" as min(x, limit) == x), into
   *letters the letters alone. */
static inline __m128i sluice_alnum_bytes(__m128i v, __m128i *letters) {
    const __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    const __m128i isDigit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    const __m128i l = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    *letters = _mm_cmpeq_epi8(_mm_min_epu8(l, _mm_set1_epi8(25)), l);
    return _mm_or_si128(isDigit, *letters);
}
#endif

size_t sluice_alnum_run(const uint8_t *bytes, size_t count) {
    size_t index = 0;
#if defined(__SSE2__)
    while (index + 16 <= count) {
        __m128i letters;
        unsigned alnum =
            (unsigned)_mm_movemask_epi8(sluice_alnum_bytes(_mm_loadu_si128((const __m128i *)(bytes + index)), &letters));
        if (alnum != 0xFFFF) return index + (size_t)__builtin_ctz(~alnum);
        index += 16;
    }
#endif
    while (index < count) {
        uint8_t b = bytes[index];
        if (!((uint8_t)(b - '0') < 10 || (uint8_t)((b | 0x20) - 'a') < 26)) break;
        index++;
    }
    return index;
}

uint64_t sluice_ascii_word_run(const uint8_t *bytes, size_t count, uint64_t state, size_t *length, size_t *letters,
                               size_t *longest) {
    size_t run = 0, letterCount = 0, longestRepeat = 0;
#if defined(__SSE2__)
    if (count >= 17) {
        /* The common case, a word shorter than sixteen bytes, in one block: no branch per byte. */
        const __m128i v = _mm_loadu_si128((const __m128i *)bytes);
        __m128i isLetter;
        unsigned alnum = (unsigned)_mm_movemask_epi8(sluice_alnum_bytes(v, &isLetter));
        if (alnum != 0xFFFF) {
            run = (size_t)__builtin_ctz(~alnum);
            unsigned inRun = (1u << run) - 1;
            letterCount = (size_t)__builtin_popcount((unsigned)_mm_movemask_epi8(isLetter) & inRun);
            /* Bit k: byte k equals byte k + 1, both in the run. */
            const __m128i next = _mm_loadu_si128((const __m128i *)(bytes + 1));
            unsigned equal = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, next)) & (inRun >> 1);
            if (equal) {
                size_t chain = 0;
                while (equal) { equal &= equal >> 1; chain++; }
                longestRepeat = chain + 1;
            }
            for (size_t k = 0; k < run; k++) state = (state ^ (uint64_t)(bytes[k] | 0x20)) * 0x100000001B3ULL;
            *length = run;
            *letters = letterCount;
            *longest = longestRepeat;
            return state;
        }
    }
#endif
    /* Long runs and the end of the text: byte by byte. */
    size_t repeats = 0;
    int last = -1;
    while (run < count) {
        uint8_t b = bytes[run];
        int isLetter = (uint8_t)((b | 0x20) - 'a') < 26;
        if (!isLetter && !((uint8_t)(b - '0') < 10)) break;
        if ((int)b == last) {
            repeats++;
            if (repeats > longestRepeat) longestRepeat = repeats;
        } else {
            repeats = 1;
        }
        last = b;
        letterCount += (size_t)isLetter;
        state = (state ^ (uint64_t)(b | 0x20)) * 0x100000001B3ULL;
        run++;
    }
    *length = run;
    *letters = letterCount;
    *longest = longestRepeat;
    return state;
}

static inline int sluice_is_invisible_candidate(uint8_t b) {
    return (b < 0x20 && b != 0x0A && b != 0x09) || b == 0x7F || (b >= 0xC0 && b <= 0xC2) || b == 0xE1 || b == 0xE2 ||
           b == 0xEF;
}

size_t sluice_invisible_candidate(const uint8_t *bytes, size_t count) {
    size_t index = 0;
#if defined(__SSE2__)
    const __m128i control = _mm_set1_epi8(0x1F);
    const __m128i zero = _mm_setzero_si128();
    const __m128i tab = _mm_set1_epi8(0x09);
    const __m128i newline = _mm_set1_epi8(0x0A);
    const __m128i del = _mm_set1_epi8(0x7F);
    const __m128i c0 = _mm_set1_epi8((char)0xC0);
    const __m128i c2 = _mm_set1_epi8((char)0xC2);
    const __m128i e1 = _mm_set1_epi8((char)0xE1);
    const __m128i e2 = _mm_set1_epi8((char)0xE2);
    const __m128i ef = _mm_set1_epi8((char)0xEF);
    while (index + 16 <= count) {
        __m128i v = _mm_loadu_si128((const __m128i *)(bytes + index));
        /* Unsigned v <= 0x1F, less tab and line feed. */
        __m128i hit = _mm_cmpeq_epi8(_mm_subs_epu8(v, control), zero);
        hit = _mm_andnot_si128(_mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, newline)), hit);
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, del));
        /* Unsigned 0xC0 <= v <= 0xC2. */
        __m128i lead = _mm_and_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, c0), v), _mm_cmpeq_epi8(_mm_min_epu8(v, c2), v));
        lead = _mm_or_si128(lead, _mm_or_si128(_mm_cmpeq_epi8(v, e1), _mm_cmpeq_epi8(v, e2)));
        hit = _mm_or_si128(hit, _mm_or_si128(lead, _mm_cmpeq_epi8(v, ef)));
        int mask = _mm_movemask_epi8(hit);
        if (mask != 0) return index + (size_t)__builtin_ctz((unsigned)mask);
        index += 16;
    }
#endif
    while (index < count && !sluice_is_invisible_candidate(bytes[index])) index++;
    return index;
}

size_t sluice_ascii_run(const uint8_t *bytes, size_t count) {
    size_t index = 0;
#if defined(__SSE2__)
    while (index + 16 <= count) {
        int mask = _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(bytes + index)));
        if (mask != 0) return index + (size_t)__builtin_ctz((unsigned)mask);
        index += 16;
    }
#endif
    while (index < count && bytes[index] < 0x80) index++;
    return index;
}
