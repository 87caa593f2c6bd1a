"""The table of kernel variants, read by setup.py (which compiles them) and by the dispatcher
(which picks one at import). Plain data only: setup.py runs this file without importing the
package.

Each variant is the kernel source compiled with its own instruction-set flags into the
module ``fastnorm.<module>``. Best first.
"""

# name: (module, x86-64 level the CPU needs (None: this machine only), GCC/Clang flags,
#        built by default on x86-64)
VARIANTS: dict[str, tuple[str, int | None, list[str], bool]] = {
    "native": ("_kernels_native", None, ["-march=native"], False),
    "x86-64-v4": ("_kernels_x86_64_v4", 4, ["-march=x86-64-v4", "-mprefer-vector-width=512"],
                  True),
    "x86-64-v3": ("_kernels_x86_64_v3", 3, ["-march=x86-64-v3"], True),
    "baseline": ("_kernels_baseline", 0, [], True),
}
BASELINE = "baseline"
