#ifndef SLUICE_COPENBLAS_SHIM_H
#define SLUICE_COPENBLAS_SHIM_H
#include <cblas.h>

/* Stops OpenBLAS's worker threads; the next threaded product starts them again. */
int blas_thread_shutdown_(void);
#endif
