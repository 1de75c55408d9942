"""Trim the serving image's virtualenv: run once in the build stage, after `pip install --no-compile`.

    python slim_venv.py /opt/venv

1. Removes what a running server never uses: pip and setuptools, test suites, type stubs, onnxruntime's
   model-conversion tools and C API library, numpy's Fortran/distutils build helpers.
2. Imports the server's third-party runtime and compiles exactly the modules that loaded, with hash-based
   validation ("unchecked-hash"): start-up skips compiling them, the image skips the byte code of the
   thousands of modules nobody imports, and the files stay valid whatever mtimes the copy into the final
   stage gives them.

It prints the venv's size before and after.
"""

from __future__ import annotations

import importlib
import py_compile
import shutil
import sys
from pathlib import Path

# What `python -m driftloop.serving` imports from the venv (driftloop's own code is compiled in its layer).
RUNTIME_MODULES = (
    "fastapi",
    "fastapi.concurrency",
    "fastapi.openapi.docs",
    "fastapi.openapi.utils",
    "fastapi_offline",
    "fastapi.responses",
    "numpy",
    "onnxruntime",
    "orjson",
    "prometheus_client",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "starlette.staticfiles",
    "psycopg2",
    "redis.asyncio",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvloop",
)

# Relative to site-packages.
UNUSED = (
    "pip",
    "setuptools",
    "_distutils_hack",
    "pkg_resources",
    "distutils-precedence.pth",
    "numpy/f2py",
    "numpy/distutils",
    "numpy/_pyinstaller",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
)
UNUSED_GLOBS = (
    "pip-*.dist-info",
    "setuptools-*.dist-info",
    # onnxruntime's C API library, for programs that link against it (34 MB). The Python binding is
    # statically linked (ldd lists only libc/libstdc++) and never loads it.
    "onnxruntime/capi/libonnxruntime.so*",
)
UNUSED_SCRIPTS = ("pip", "pip3", "pip3.11", "f2py", "numpy-config", "onnxruntime_test")


def _size(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def trim(venv: Path, site: Path) -> None:
    for name in UNUSED:
        _remove(site / name)
    for pattern in UNUSED_GLOBS:
        for path in site.glob(pattern):
            _remove(path)
    for name in UNUSED_SCRIPTS:
        _remove(venv / "bin" / name)
    for directory in [p for p in site.rglob("*") if p.is_dir() and p.name in ("tests", "testing_data")]:
        # Only test suites inside packages; sqlalchemy.testing and numpy.testing are importable APIs.
        if directory.exists():
            shutil.rmtree(directory)
    for stub in site.rglob("*.pyi"):
        stub.unlink()
    for cache in [p for p in site.rglob("__pycache__") if p.is_dir()]:
        shutil.rmtree(cache)


def compile_runtime(site: Path) -> int:
    sys.dont_write_bytecode = True
    for module in RUNTIME_MODULES:
        importlib.import_module(module)
    sources = set()
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        # Modules loaded before the trim (the setuptools .pth hook) are gone: skip what no longer exists.
        if origin and origin.endswith(".py") and Path(origin).is_relative_to(site) and Path(origin).is_file():
            sources.add(origin)
    for source in sorted(sources):
        py_compile.compile(source, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return len(sources)


def main() -> None:
    venv = Path(sys.argv[1])
    (site,) = venv.glob("lib/python3*/site-packages")
    before = _size(venv)
    trim(venv, site)
    compiled = compile_runtime(site)
    after = _size(venv)
    print(f"slim_venv: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, {compiled} runtime modules compiled")  # noqa: T201


if __name__ == "__main__":
    main()
