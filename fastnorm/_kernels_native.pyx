# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
# The kernels compiled for the native instruction set (flags in setup.py).
VARIANT = "native"

include "_kernels.pxi"
