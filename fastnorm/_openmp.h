/* Guarded OpenMP entry points: a build without OpenMP still compiles and imports. */
#ifndef FASTNORM_OPENMP_H
#define FASTNORM_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
#define FN_HAVE_OPENMP 1
#define FN_OPENMP_VERSION _OPENMP
static inline int fn_omp_get_max_threads(void) { return omp_get_max_threads(); }
#else
#define FN_HAVE_OPENMP 0
#define FN_OPENMP_VERSION 0
static inline int fn_omp_get_max_threads(void) { return 1; }
#endif

#endif
