#ifndef SLUICE_COPENSSL_SHIM_H
#define SLUICE_COPENSSL_SHIM_H
// Only the keyed hash the desensitize stage needs for pseudonyms (HMAC-SHA256 from libcrypto).
#include <openssl/hmac.h>
#include <openssl/evp.h>
#endif
