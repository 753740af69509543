#ifndef SLUICE_COPENBLAS_SHIM_H
#define SLUICE_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
