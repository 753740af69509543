#ifndef SLUICE_COPENSSL_SHIM_H
#define SLUICE_COPENSSL_SHIM_H
// The keyed hash the desensitize stage needs for pseudonyms (HMAC-SHA256 from libcrypto), and SHA-256 digests.
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stddef.h>

/// SHA-256 of `count` bytes into `digest` (32 bytes), straight through libcrypto's SHA-256 block functions.
///
/// The one-call EVP route (`EVP_Digest` with `EVP_sha256()`) looks the algorithm up in the provider tables on every
/// call: locks, string compares and allocations that cost more than hashing a typical document. The low-level
/// functions are deprecated in OpenSSL 3 in favour of EVP but remain, with the same assembly (SHA-NI where the CPU
/// has it).
static inline void sluice_sha256(const void *bytes, size_t count, unsigned char *digest) {
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
    SHA256_CTX context;
    SHA256_Init(&context);
    SHA256_Update(&context, bytes, count);
    SHA256_Final(digest, &context);
#pragma clang diagnostic pop
}
#endif
