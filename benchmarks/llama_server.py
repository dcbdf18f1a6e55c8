"""llama.cpp's own `llama-server`, the serving benchmarks' strongest peer, built once for them.

The llama.cpp repository is too large to fetch here, but llama-cpp-python's source distribution
carries its sources (`vendor/llama.cpp`). So, outside the package and once per version:
  1. `pip download llama-cpp-python==<the installed version> --no-deps --no-binary :all:`;
  2. `cmake` in its `vendor/llama.cpp`: Release, `-DGGML_NATIVE=ON` (built for this CPU, as the
     installed wheel is), without curl, OpenSSL or the web UI (nothing fetched at build time),
     a static binary, and on x86_64 the Makefile's no-AMX flags (read from it: one list);
  3. `cmake --build --target llama-server -j2` at `nice -n 10` (about 6 minutes on 2 cores).
The binary is kept in `$LMLAB_HOME/bench/llama-server-<version>/llama-server` (the build's log
beside it). `binary()` returns it, building it first when needed, or None with a one-line note
when it cannot be built (no cmake or C++ compiler, no network for the download).

Usage: python benchmarks/llama_server.py   (builds it if needed and prints its path)
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from lmlab.home import lmlab_home

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def installed_version() -> str | None:
    """The installed llama-cpp-python's version (its sdist carries the matching llama.cpp)."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def cache_dir(version: str) -> Path:
    """Where the sources, the build and the binary of one version live."""
    return lmlab_home() / "bench" / f"llama-server-{version}"


def no_amx_flags() -> str:
    """The Makefile's no-AMX compiler flags on x86_64 (its AMX kernels crash on some Xeon VMs)."""
    if platform.machine() not in ("x86_64", "AMD64") or not MAKEFILE.is_file():
        return ""
    found = re.search(r"^NO_AMX := (.+)$", MAKEFILE.read_text(), re.MULTILINE)
    return found.group(1).strip() if found else ""


def cmake_configure_args(source: Path, build: Path) -> list[str]:
    """The cmake configure command for llama-server (see the module docstring)."""
    args = ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    args += ["-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"]
    args += ["-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DBUILD_SHARED_LIBS=OFF"]
    args += ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    if flags := no_amx_flags():
        args += [f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"]
    return args


def missing_tools() -> list[str]:
    """The build tools this machine lacks."""
    compilers = ("c++", "g++", "clang++")
    missing = [] if shutil.which("cmake") else ["cmake"]
    return missing + ([] if any(map(shutil.which, compilers)) else ["a C++ compiler"])


def _run(command: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=True)


def _sources(folder: Path, version: str, log: Path) -> Path:
    """vendor/llama.cpp of the llama-cpp-python sdist, downloaded and unpacked once."""
    source = folder / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if source.is_dir():
        return source
    download = folder / "download"
    pip = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps"]
    _run([*pip, "--no-binary", ":all:", "-d", str(download)], log)
    (sdist,) = download.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(folder, filter="data")
    if not source.is_dir():
        raise FileNotFoundError(f"no vendor/llama.cpp in {sdist.name}")
    return source


def build(version: str) -> Path:
    """Build llama-server for this llama-cpp-python version (raises on failure; see the log)."""
    folder = cache_dir(version)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    source = _sources(folder, version, log)
    _run(cmake_configure_args(source, folder / "build"), log)
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    jobs = os.environ.get("LLAMA_SERVER_JOBS", "2")
    _run([*nice, "cmake", "--build", str(folder / "build"), "--target", "llama-server",
          "-j", jobs], log)  # fmt: skip
    built = folder / "build" / "bin" / "llama-server"
    target = folder / "llama-server"
    shutil.copy2(built, target.with_suffix(".tmp"))
    os.replace(target.with_suffix(".tmp"), target)  # present only once whole
    return target


def binary(allow_build: bool = True) -> tuple[Path | None, str]:
    """llama-server's path (built now when needed and allowed), or None and a one-line note."""
    version = installed_version()
    if version is None:
        return None, "llama-server skipped: llama-cpp-python is not installed (its sdist has it)"
    target = cache_dir(version) / "llama-server"
    if target.is_file():
        return target, f"llama-server {version} (llama-cpp-python's llama.cpp): {target}"
    if not allow_build:
        return None, "llama-server skipped: not built (python benchmarks/llama_server.py)"
    if missing := missing_tools():
        return None, f"llama-server skipped: cannot build it without {' and '.join(missing)}"
    log = cache_dir(version) / "build.log"
    print(f"building llama-server {version} once (about 6 minutes on 2 cores; log {log})",
          flush=True)  # fmt: skip
    try:
        return build(version), f"llama-server {version} built: {target}"
    except (subprocess.CalledProcessError, OSError, ValueError) as e:
        return None, f"llama-server skipped: its build failed ({e}; see {log})"


if __name__ == "__main__":
    path, note = binary()
    print(note)
    sys.exit(0 if path else 1)
