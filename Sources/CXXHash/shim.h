#ifndef SLUICE_CXXHASH_SHIM_H
#define SLUICE_CXXHASH_SHIM_H
#include <xxhash.h>
#endif
