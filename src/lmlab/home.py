"""Where lmlab keeps its cache, and how it writes files and folders without losing data."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lmlab.errors import LmlabError


def lmlab_home() -> Path:
    """The cache folder: `$LMLAB_HOME`, else `~/.cache/lmlab`."""
    return Path(os.environ.get("LMLAB_HOME") or Path.home() / ".cache" / "lmlab").expanduser()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (keys caches by content, not by name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def remembered_sha256(path: Path) -> str:
    """`file_sha256`, remembered in the cache by the file's identity (device, inode, size,
    modification and change times): a model's weights are read once, not on every start
    (90 MB for the bundled encoder: about 0.3 s saved per command)."""
    info = os.stat(path)
    identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    where = lmlab_home() / "sha256" / hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()
    try:
        known = json.loads(where.read_text())
        if known["identity"] == identity:
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = file_sha256(path)
    with contextlib.suppress(OSError):  # a read-only cache: hash again next time
        atomic_write_text(where, json.dumps({"identity": identity, "sha256": digest}))
    return digest


def _usual_mode(path: str | Path, mode: int) -> None:
    """Give a mkstemp/mkdtemp result (0600/0700) the permissions a plain open/mkdir would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _usual_modes(folder: Path) -> None:
    """The usual permissions for every file written into `folder`: some writers (safetensors)
    create their files 0600, which collaborators sharing a project folder could not read."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            _usual_mode(path, 0o666)


@contextlib.contextmanager
def atomic_dir(target: Path, *, replaces: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` in one rename.

    A crash or an exception leaves `target` as it was (absent or complete), never half-written.
    With `replaces` (the file every output of this kind holds, e.g. lmlab.json), an existing
    `target` is replaced only if it is empty or such an output: a user's own folder or file
    given as --out is an error, not deleted.
    """
    target = Path(os.path.abspath(target))  # "." has no name to put a sibling beside
    if replaces is not None:
        _check_replaceable(target, replaces)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    _usual_mode(tmp, 0o777)
    try:
        yield tmp
        _usual_modes(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(target: Path, marker: str) -> None:
    if not target.exists():
        return
    if target.is_dir() and ((target / marker).is_file() or not any(target.iterdir())):
        return  # an earlier output of the same kind, or an empty folder
    what = "a file" if not target.is_dir() else f"a folder without {marker}"
    raise LmlabError(
        f"{target} is {what}, not an earlier output to replace: choose another --out",
        param="out",
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary sibling and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    _usual_mode(tmp, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` to write (binary files: .npy, .parquet, .png);
    on success it replaces `target` in one rename, on failure it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    _usual_mode(tmp, 0o666)
    try:
        yield Path(tmp)
        _usual_mode(tmp, 0o666)  # again: a writer may have replaced the file (safetensors: 0600)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
