"""GGML's own C quantizers as the test reference, built once into a cache outside the repository.

GGML's source is on PyPI inside the llama-cpp-python source distribution. We compile only
``ggml-quants.c`` (the ``quantize_row_*_ref`` functions that ``llama-quantize`` runs without an
importance matrix) the way GGML's portable x86-64 build compiles it: ``-O2 -ffp-contract=off``, no
``-march=native`` (fused multiply-add would round some K-quant blocks differently). Nothing built
here is committed. Run ``python -m tests.ggml_reference`` to build ahead of the tests
(scripts/setup-test-env.sh does).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

VERSION = "0.3.36"
CACHE = Path(os.environ.get("SDMODEL_TEST_CACHE", Path.home() / ".cache" / "sdmodel-test"))
LIBRARY = CACHE / f"ggml-quants-{VERSION}.so"

# The few symbols ggml-quants.c references from the rest of GGML (only in code paths we never call).
_STUBS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort %s:%d\n", file, line); abort();
}
size_t ggml_row_size(int type, long long ne) { (void)type; (void)ne; abort(); }
const char * ggml_type_name(int type) { (void)type; return "?"; }
size_t ggml_type_size(int type) { (void)type; abort(); }
"""

_PIP_DOWNLOAD = (sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps")
# GGML's portable build: no fused multiply-add contraction, no -march=native
_CFLAGS = ("-O2", "-ffp-contract=off", "-fPIC", "-shared", "-std=gnu11", "-DNDEBUG")

# type name -> (C function, elements per block, bytes per block)
FUNCTIONS = {
    "Q8_0": ("quantize_row_q8_0_ref", 32, 34),
    "Q4_0": ("quantize_row_q4_0_ref", 32, 18),
    "Q4_1": ("quantize_row_q4_1_ref", 32, 20),
    "Q5_0": ("quantize_row_q5_0_ref", 32, 22),
    "Q5_1": ("quantize_row_q5_1_ref", 32, 24),
    "Q2_K": ("quantize_row_q2_K_ref", 256, 84),
    "Q3_K": ("quantize_row_q3_K_ref", 256, 110),
    "Q4_K": ("quantize_row_q4_K_ref", 256, 144),
    "Q5_K": ("quantize_row_q5_K_ref", 256, 176),
    "Q6_K": ("quantize_row_q6_K_ref", 256, 210),
}


def build() -> Path:
    """Download (pip), extract and compile GGML's quantizers; return the shared library's path."""
    if LIBRARY.exists():
        return LIBRARY
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc/cc) to build GGML's reference quantizers")
    download = CACHE / "download"
    download.mkdir(parents=True, exist_ok=True)
    sdist = download / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [*_PIP_DOWNLOAD, f"llama-cpp-python=={VERSION}", "-d", str(download)],
            check=True,
        )
    source = CACHE / f"ggml-{VERSION}"
    if not (source / "src" / "ggml-quants.c").exists():
        prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/ggml/"
        with tarfile.open(sdist) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith(prefix + "src/") or m.name.startswith(prefix + "include/")
            ]
            for member in members:
                member.name = member.name[len(prefix) :]
            archive.extractall(source, members=members, filter="data")
    stubs = source / "sdmodel_stubs.c"
    stubs.write_text(_STUBS)
    partial = LIBRARY.with_suffix(".so.partial")
    src = source / "src"
    subprocess.run(
        [
            compiler,
            *_CFLAGS,
            "-I",
            str(source / "include"),
            "-I",
            str(src),
            "-I",
            str(src / "ggml-cpu"),
            str(src / "ggml-quants.c"),
            str(stubs),
            "-lm",
            "-o",
            str(partial),
        ],
        check=True,
    )
    partial.replace(LIBRARY)
    return LIBRARY


class Reference:
    """ctypes front of the compiled ``quantize_row_*_ref`` functions."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        for name, *_ in FUNCTIONS.values():
            function = getattr(self._lib, name)
            function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            function.restype = None

    def quantize(self, data: np.ndarray, qtype: str) -> np.ndarray:
        """Blocks of a float32 array whose length is a multiple of the block size, as bytes."""
        name, block, size = FUNCTIONS[qtype]
        x = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
        assert x.size % block == 0
        out = np.zeros(x.size // block * size, dtype=np.uint8)
        getattr(self._lib, name)(x.ctypes.data, out.ctypes.data, x.size)
        return out


if __name__ == "__main__":
    print(build())
