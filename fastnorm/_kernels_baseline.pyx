# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
# The kernels compiled for the baseline instruction set (flags in setup.py).
VARIANT = "baseline"

include "_kernels.pxi"
