# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
# The kernels compiled for the x86-64-v4 instruction set (flags in setup.py).
VARIANT = "x86-64-v4"

include "_kernels.pxi"
