"""Build of handgrad's one compiled extension, ``handgrad._kernels`` (C, in ``csrc/``).

Everything else about the package is declared in ``pyproject.toml``.  The
extension is optional: without a C compiler (or without NumPy's headers) the
build says so in one warning and installs handgrad without it, and handgrad
then runs its NumPy code, which gives the same results (see
``src/handgrad/_compiled.py``).
"""

import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -ffp-contract=off: no fused multiply-add, whatever the target, so every product is rounded before the sum
# that uses it, as NumPy rounds it; -fno-math-errno lets sqrt be one instruction (and vectorised), which
# changes no result.  No -ffast-math: the kernels must round as the NumPy code does.
UNIX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-pthread"]
MSVC_FLAGS = ["/O2", "/fp:precise"]


class OptionalBuildExt(build_ext):
    """``build_ext`` that finds NumPy's headers and the compiler's flags only when it builds.

    ``optional=True`` on the extension turns a failed compile into a warning;
    this adds a line saying what that means for handgrad.
    """

    def build_extension(self, ext):
        from distutils.errors import CCompilerError, CompileError, DistutilsError

        try:
            import numpy
        except ImportError:
            self._explain("NumPy's C headers are not available to the build")
            raise CompileError("numpy is needed to build handgrad._kernels") from None
        ext.include_dirs.append(numpy.get_include())
        unix = self.compiler.compiler_type == "unix"
        ext.extra_compile_args = UNIX_FLAGS if unix else MSVC_FLAGS
        ext.extra_link_args = ["-pthread"] if unix and sys.platform != "darwin" else []
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, DistutilsError) as error:
            self._explain(f"the C compiler failed ({error})")
            raise

    @staticmethod
    def _explain(why):
        print(f"handgrad: the compiled kernels were not built: {why}; handgrad will run its NumPy code "
              "instead (same results, slower steps)", file=sys.stderr)


HERE = Path(__file__).resolve().parent
# The sources' digest, kept in the module as SOURCES: a build older than csrc/ is not loaded.
SOURCES = runpy.run_path(str(HERE / "src" / "handgrad" / "_csrc_digest.py"))["digest"](HERE / "csrc")

setup(
    ext_modules=[Extension(
        "handgrad._kernels",
        sources=["csrc/module.c", "csrc/kernels.c", "csrc/threads.c"],
        depends=["csrc/kernels.h", "csrc/real_kernels.h"],
        include_dirs=["csrc"],
        define_macros=[("HANDGRAD_SOURCES", f'"{SOURCES}"')],
        optional=True,
    )],
    cmdclass={"build_ext": OptionalBuildExt},
)
