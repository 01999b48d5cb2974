"""Build hooks: compile the Cython kernels in ``_native`` and generate the gRPC stubs.

Both steps run inside the package's own build (``pip install .`` or ``pip install -e .``),
so a fresh clone needs no manual step. The generated files are not committed; a test
(`tests/substrate/test_proto_stubs.py`) fails when they drift from the ``.proto`` source.
"""
from __future__ import annotations

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join("substrate", "v1")


def generate_stubs() -> None:
    """Run protoc (from grpcio-tools) on every ``substrate/v1/*.proto``."""
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(glob.glob(os.path.join(HERE, PROTO_DIR, "*.proto")))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for proto in protos:
        rel = os.path.relpath(proto, HERE)
        code = protoc.main([
            "grpc_tools.protoc", f"-I{HERE}", f"-I{include}",
            f"--python_out={HERE}", f"--pyi_out={HERE}", f"--grpc_python_out={HERE}", rel,
        ])
        if code != 0:
            raise RuntimeError(f"protoc failed on {rel}")


class BuildPy(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


class BuildExt(build_ext):
    def run(self) -> None:
        generate_stubs()
        super().run()


def extensions() -> list:
    from Cython.Build import cythonize

    modules = []
    for pyx in sorted(glob.glob(os.path.join("_native", "*.pyx"))):
        name = pyx[:-4].replace(os.sep, ".")
        modules.append(Extension(name, [pyx], extra_compile_args=["-O3"]))
    if not modules:
        return []
    return cythonize(modules, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False,
    })


setup(ext_modules=extensions(), cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
