"""Files a framework left on an agent: where they live and how they are read, confined.

Each framework gets a directory on every agent that runs its executors,
``work_dir/frameworks/<framework_id>/``, which outlives the executors (dataflow keeps shuffle
map outputs there) and is removed when the framework is shut down. Sandboxes hold executors'
and command tasks' stdout/stderr. :func:`resolve` turns a request into a real path, refusing
absolute paths, ``..`` and links that lead outside the area; :func:`read_chunks` streams it.

A sandbox may belong to the OS user its task ran as, who can swap a file for a link between
the check and the read: :func:`read_chunks` opens without following a final link and, where
``/proc`` says which file an open descriptor is, checks again that it is inside the area.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator

from substrate.agent.processes import is_safe_id, sandbox_path
from substrate.errors import InvalidRequest
from substrate.v1 import pb

CHUNK = 1 << 20


def framework_dir(work_dir: str | os.PathLike[str], framework_id: str) -> Path:
    """``work_dir/frameworks/<framework_id>``.

    Examples
    --------
    >>> str(framework_dir("/w", "fw-1"))
    '/w/frameworks/fw-1'
    """
    if not is_safe_id(framework_id):
        raise InvalidRequest(f"unsafe framework id: {framework_id!r}")
    return Path(work_dir) / "frameworks" / framework_id


def area_of(work_dir: str, request: "pb.ReadFileRequest") -> Path:
    """The directory a request reads from (its framework's area or a sandbox)."""
    if request.area == pb.ReadFileRequest.FRAMEWORK:
        return framework_dir(work_dir, request.framework_id)
    if request.area == pb.ReadFileRequest.SANDBOX:
        return sandbox_path(work_dir, request.framework_id, request.name)
    raise InvalidRequest("unknown file area")


def resolve(work_dir: str, request: "pb.ReadFileRequest") -> Path:
    """The real path a request names, guaranteed inside its area.

    Raises
    ------
    InvalidRequest
        For an unknown area, an absolute path, ``..``, or a link that escapes the area.
    FileNotFoundError
        When the file does not exist.
    """
    base = area_of(work_dir, request)
    rel = request.path
    if not rel or os.path.isabs(rel) or "\0" in rel or ".." in Path(rel).parts:
        raise InvalidRequest(f"path {rel!r} must be relative and stay inside its area")
    real_base = os.path.realpath(base)
    real = os.path.realpath(os.path.join(real_base, rel))
    if os.path.commonpath([real_base, real]) != real_base:
        raise InvalidRequest(f"path {rel!r} leads outside its area")
    if not os.path.isfile(real):
        raise FileNotFoundError(rel)
    return Path(real)


def _open_confined(path: Path, area: str | None) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidRequest(f"{path.name!r} is a link") from None
        raise
    if area is None:
        return fd
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return fd        # no /proc: the check before the open is what there is
    base = os.path.realpath(area)
    if os.path.commonpath([base, real]) != base:
        os.close(fd)
        raise InvalidRequest(f"{path.name!r} leads outside its area")
    return fd


def read_chunks(path: Path, offset: int, length: int,
                area: str | None = None) -> Iterator["pb.FileChunk"]:
    """Chunks of ``path`` from ``offset`` (``length`` < 0: to the end), confined to the
    directory ``area`` when given (see the module docstring)."""
    fd = _open_confined(path, area)
    size = os.fstat(fd).st_size
    end = size if length < 0 else min(size, offset + length)
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        pos = offset
        while pos < end:
            data = f.read(min(CHUNK, end - pos))
            if not data:
                break
            yield pb.FileChunk(data=data, offset=pos, file_size=size)
            pos += len(data)
    if offset >= end:
        yield pb.FileChunk(data=b"", offset=offset, file_size=size)
