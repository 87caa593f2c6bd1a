"""Build of fastnorm's Cython/OpenMP extension modules.

Environment switches (all optional):
  FASTNORM_OPENMP=0   build without OpenMP (serial kernels, same results)
  FASTNORM_NATIVE=1   also build a kernel variant with -march=native (a local, non-portable build)

The kernels are compiled once per instruction-set level (baseline, x86-64-v3, x86-64-v4 on
x86-64 with GCC/Clang) from one source; fastnorm picks the best one the CPU runs at import.
"""
import os
import runpy
import shutil
import sys
import sysconfig
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
}

# the kernel variants: fastnorm/_variants.py, the table the dispatcher reads too
_TABLE = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastnorm",
                                     "_variants.py"))
VARIANT_FLAGS = {module: flags for module, _, flags, _ in _TABLE["VARIANTS"].values()}
BASELINE_MODULE = _TABLE["VARIANTS"][_TABLE["BASELINE"]][0]
OPENMP_CANDIDATES = [  # (compile flags, link flags)
    (["-fopenmp"], ["-fopenmp"]),
    (["-Xpreprocessor", "-fopenmp"], ["-lomp"]),   # Apple clang with libomp
]
OPENMP_PROBE = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""


def env_flag(name, default):
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def is_x86_64():
    """Whether the *target* is x86-64: sysconfig honours cross builds (_PYTHON_HOST_PLATFORM),
    and on macOS ARCHFLAGS names the architecture cibuildwheel builds for."""
    archflags = os.environ.get("ARCHFLAGS", "")
    target = sysconfig.get_platform().lower()
    if target.startswith("macosx") and archflags:
        return "x86_64" in archflags and "arm64" not in archflags
    return target.endswith(("x86_64", "amd64"))


class BuildExt(build_ext):
    """Probes the compiler once: OpenMP flags (or a serial build) and -march support."""

    def _compiles(self, source, compile_flags, link_flags=(), link=False):
        tmp = tempfile.mkdtemp(prefix="fastnorm-probe-")
        try:
            path = os.path.join(tmp, "probe.c")
            with open(path, "w") as f:
                f.write(source)
            objs = self.compiler.compile([path], output_dir=tmp, extra_postargs=compile_flags)
            if link:
                self.compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                              extra_postargs=list(link_flags))
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _openmp_flags(self, msvc):
        if not env_flag("FASTNORM_OPENMP", True):
            print("fastnorm: FASTNORM_OPENMP=0, building serial kernels")
            return [], []
        candidates = [(["/openmp"], [])] if msvc else OPENMP_CANDIDATES
        for cflags, lflags in candidates:
            if self._compiles(OPENMP_PROBE, cflags, lflags, link=True):
                print(f"fastnorm: OpenMP enabled with {' '.join(cflags)}")
                return cflags, lflags
        print("fastnorm: the compiler has no usable OpenMP, building serial kernels")
        return [], []

    def build_extensions(self):
        # always recompile: an object left in build/ by an earlier build with other switches
        # (FASTNORM_OPENMP, FASTNORM_NATIVE) must not be reused
        self.force = True
        msvc = self.compiler.compiler_type == "msvc"
        omp_c, omp_l = self._openmp_flags(msvc)
        # no FMA contraction: every expression rounds as written (fused multiply-adds only
        # where the source asks), so all parallel strategies give the same bits.
        # (-funroll-loops was measured and left out: on Zen 4 it took 21-23% of the
        # instructions of LayerNorm and BatchNorm training but made channels-last BatchNorm
        # 1.3-1.7x and NCHW BatchNorm training 1.1-1.2x slower, single-threaded.)
        base = ["/O2"] if msvc else ["-O3", "-ffp-contract=off", "-fno-math-errno"]
        kept = []
        for ext in self.extensions:
            flags = base + VARIANT_FLAGS.get(ext.name.rsplit(".", 1)[-1], [])
            if flags != base and not self._compiles("int main(void){return 0;}\n", flags):
                print(f"fastnorm: the compiler lacks {' '.join(flags[len(base):])}, "
                      f"skipping {ext.name}")
                continue
            ext.extra_compile_args = flags + omp_c
            ext.extra_link_args = list(omp_l)
            kept.append(ext)
        self.extensions = kept
        self._remove_stale_variants({ext.name for ext in kept})
        # the kernel variants are independent compilations of ~1 min each: one per core
        # (pip install and python -m build pass no --parallel; an explicit one is kept)
        if not self.parallel:
            self.parallel = max(1, min(len(kept), os.cpu_count() or 1))
        super().build_extensions()

    def _remove_stale_variants(self, built):
        """A kernel variant left in build/ by an earlier build with other switches (say
        FASTNORM_NATIVE=1) must not be packaged by this one."""
        folder = os.path.join(self.build_lib, "fastnorm")
        if not os.path.isdir(folder):
            return
        for name in os.listdir(folder):
            module = "fastnorm." + name.split(".", 1)[0]
            if name.startswith("_kernels_") and not name.endswith((".pyx", ".pxi", ".py")) \
                    and module not in built:
                os.remove(os.path.join(folder, name))


def extensions():
    names = ["_openmp_helpers", "_cpu", BASELINE_MODULE]
    flagged = sys.platform != "win32"          # -march flags: GCC/Clang only
    native = env_flag("FASTNORM_NATIVE", False)
    for module, level, _, default in _TABLE["VARIANTS"].values():
        if module == BASELINE_MODULE or not flagged:
            continue
        if (default and is_x86_64()) or (level is None and native):
            names.append(module)
    return [Extension(f"fastnorm.{n}", [f"fastnorm/{n}.pyx"], include_dirs=["fastnorm"])
            for n in names]


setup(
    ext_modules=cythonize(extensions(), compiler_directives=DIRECTIVES,
                          nthreads=os.cpu_count() or 1),
    cmdclass={"build_ext": BuildExt},
)
