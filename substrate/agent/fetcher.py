"""The agent's fetcher: URIs a command or an executor declares, brought into its sandbox.

Before the agent starts a program whose :class:`~substrate.v1.pb.CommandInfo` lists ``uris``,
it downloads each one (``http``, ``https``, ``file``) into the sandbox, checks its sha256 when
one is given, keeps a copy in a per-agent cache when asked to, and unpacks zip and tar archives
when asked to. Every download is streamed into a temporary file next to its destination and
renamed into place, so a failed fetch leaves nothing half-written under the final name.

Archives are inspected *before* anything is unpacked: an absolute member name, a ``..``
component, a link whose target leaves the sandbox, a device or fifo, more members or more
bytes than the limits allow — each refuses the whole archive with a message naming the URI and
the member. Nothing is ever written outside the sandbox (or the cache).

What happens to the task when a fetch fails (TASK_FAILED, reason FETCH_FAILED) is decided by
:mod:`substrate.agent.fetch_launch`; this module is synchronous file and network I/O only and
runs on a worker thread.

Examples
--------
>>> import tempfile, pathlib
>>> src = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
>>> _ = src.write_text("hi")
>>> box = pathlib.Path(tempfile.mkdtemp())
>>> fetch_all([FetchURI(str(src))], box, FetcherConfig(cache_dir=str(box / ".cache")))
[PosixPath('...hello.txt')]
>>> (box / "hello.txt").read_text()
'hi'
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Union

from substrate.errors import SubstrateError
from substrate.uris import FetchURI
from substrate.v1 import pb

CHUNK = 1 << 20
AnyURI = Union[FetchURI, "pb.FetchURI"]


class FetchError(SubstrateError):
    """A URI could not be fetched, verified or unpacked; the message names the URI."""


@dataclass
class FetcherConfig:
    """Limits and the cache of an agent's fetcher.

    Parameters
    ----------
    cache_dir : str
        Where cached downloads live (default: ``<work_dir>/fetch-cache``, set by the agent).
    max_bytes : int
        Largest single download.
    max_extracted_bytes : int
        Largest total size of an archive's members once unpacked.
    max_members : int
        Most members an archive may have.
    cache_max_bytes : int
        The cache is trimmed (oldest first) to this size after every insertion.
    timeout : float
        Seconds to wait for an HTTP server to answer (per read).
    """

    cache_dir: str = ""
    max_bytes: int = 1 << 30
    max_extracted_bytes: int = 4 << 30
    max_members: int = 100_000
    cache_max_bytes: int = 2 << 30
    timeout: float = 60.0


def _as_uri(uri: AnyURI) -> FetchURI:
    if isinstance(uri, FetchURI):
        return uri
    return FetchURI(uri.value, uri.sha256, uri.extract, uri.cache, uri.executable,
                    uri.output_file)


def fetch_all(uris: Iterable[AnyURI], sandbox: Path, config: FetcherConfig) -> list[Path]:
    """Fetch every URI into ``sandbox`` (created if needed); the paths written, in order.

    Raises
    ------
    FetchError
        On the first URI that fails; its message names that URI and why.
    """
    sandbox = Path(sandbox)
    sandbox.mkdir(parents=True, exist_ok=True)
    return [fetch_one(_as_uri(u), sandbox, config) for u in uris]


def fetch_one(uri: FetchURI, sandbox: Path, config: FetcherConfig) -> Path:
    """Fetch one URI into ``sandbox``; see :func:`fetch_all`."""
    try:
        uri.validate()
    except SubstrateError as exc:
        raise FetchError(str(exc)) from None
    dest = sandbox / uri.name
    cached = _cache_path(uri, config) if uri.cache and config.cache_dir else None
    if cached is not None and cached.is_file():
        _copy_into(cached, dest, uri, config)
    else:
        _download(uri, dest, config)
        if cached is not None:
            _cache_insert(dest, cached, config)
    if uri.executable:
        dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if uri.extract:
        extract(dest, sandbox, config, label=uri.value)
    return dest


# ---------------------------------------------------------------------- downloading

def _open(uri: FetchURI, config: FetcherConfig) -> BinaryIO:
    if uri.scheme == "file":
        path = uri.value if uri.value.startswith("/") else \
            urllib.parse.unquote(urllib.parse.urlsplit(uri.value).path)
        try:
            return open(path, "rb")
        except OSError as exc:
            raise FetchError(f"cannot fetch {uri.value}: {exc.strerror or exc}") from None
    try:
        return _OPENER.open(uri.value, timeout=config.timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot fetch {uri.value}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot fetch {uri.value}: {reason}") from None


class _HTTPOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http/https (never to ftp or file on the agent)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl} refused",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HTTPOnlyRedirects)


def _download(uri: FetchURI, dest: Path, config: FetcherConfig) -> None:
    with _open(uri, config) as source:
        _stream_to(source, dest, uri, config)


def _copy_into(cached: Path, dest: Path, uri: FetchURI, config: FetcherConfig) -> None:
    with open(cached, "rb") as source:
        _stream_to(source, dest, uri, config)


def _stream_to(source: BinaryIO, dest: Path, uri: FetchURI, config: FetcherConfig) -> None:
    """Copy with a size cap and a digest; rename into place only when both are right."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    block = source.read(CHUNK)
                except OSError as exc:
                    raise FetchError(f"cannot fetch {uri.value}: {exc}") from None
                if not block:
                    break
                size += len(block)
                if size > config.max_bytes:
                    raise FetchError(f"cannot fetch {uri.value}: larger than the "
                                     f"{config.max_bytes} byte limit")
                digest.update(block)
                out.write(block)
        if uri.sha256 and digest.hexdigest() != uri.sha256:
            raise FetchError(f"checksum mismatch for {uri.value}: expected sha256 "
                             f"{uri.sha256}, got {digest.hexdigest()}")
        os.replace(tmp, dest)  # replaces a link at dest instead of writing through it
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------- cache

def _cache_path(uri: FetchURI, config: FetcherConfig) -> Path:
    key = uri.sha256 or hashlib.sha256(uri.value.encode()).hexdigest()
    return Path(config.cache_dir) / key


def _cache_insert(source: Path, cached: Path, config: FetcherConfig) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cache-", dir=cached.parent)
    os.close(fd)
    shutil.copyfile(source, tmp)
    os.replace(tmp, cached)
    trim_cache(Path(config.cache_dir), config.cache_max_bytes, keep=cached)


def trim_cache(cache_dir: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently written cache entries until the cache fits ``max_bytes``."""
    entries = []
    for entry in cache_dir.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            st = entry.stat()
            entries.append((st.st_mtime, st.st_size, entry))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, entry in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if entry == keep:
            continue
        entry.unlink(missing_ok=True)
        total -= size
        removed.append(entry)
    return removed


# ---------------------------------------------------------------------- archives

def _is_archive(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip") or name.endswith(".whl") or name.endswith(".egg"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    return ""


def _check_name(name: str, label: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or name.startswith("/") or ":" in rel.parts[0]:
        raise FetchError(f"refusing to unpack {label}: member {name!r} has an absolute path")
    if ".." in rel.parts:
        raise FetchError(f"refusing to unpack {label}: member {name!r} leads outside the "
                         f"sandbox ('..')")
    return rel


def _check_link(member: str, target: str, label: str) -> None:
    rel = PurePosixPath(member)
    if target.startswith("/"):
        raise FetchError(f"refusing to unpack {label}: link {member!r} points to the "
                         f"absolute path {target!r}")
    depth = len(rel.parent.parts)
    for part in PurePosixPath(target).parts:
        depth = depth - 1 if part == ".." else depth + (part != ".")
        if depth < 0:
            raise FetchError(f"refusing to unpack {label}: link {member!r} points outside "
                             f"the sandbox ({target!r})")


def extract(archive: Path, dest: Path, config: FetcherConfig, *, label: str = "") -> None:
    """Unpack a zip or tar archive into ``dest`` after checking every member.

    Raises
    ------
    FetchError
        For an unknown archive type, an unsafe member, or a limit exceeded; nothing of that
        archive is unpacked then.
    """
    label = label or archive.name
    kind = _is_archive(archive)
    try:
        if kind == "zip":
            _extract_zip(archive, dest, config, label)
        elif kind == "tar":
            _extract_tar(archive, dest, config, label)
        else:
            raise FetchError(f"cannot unpack {label}: not a zip or tar archive (by its name)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise FetchError(f"cannot unpack {label}: {exc}") from None


def _limits(count: int, total: int, config: FetcherConfig, label: str) -> None:
    if count > config.max_members:
        raise FetchError(f"refusing to unpack {label}: more than {config.max_members} members")
    if total > config.max_extracted_bytes:
        raise FetchError(f"refusing to unpack {label}: it would unpack to more than "
                         f"{config.max_extracted_bytes} bytes")


def _extract_zip(archive: Path, dest: Path, config: FetcherConfig, label: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _limits(len(infos), sum(i.file_size for i in infos), config, label)
        links = {}
        for info in infos:
            _check_name(info.filename, label)
            if stat.S_ISLNK(info.external_attr >> 16):
                target = zf.read(info).decode("utf-8", "replace")
                _check_link(info.filename.rstrip("/"), target, label)
                links[info.filename] = target
        root = os.path.realpath(dest)
        for info in infos:
            out = Path(root, *PurePosixPath(info.filename.replace("\\", "/")).parts)
            _confined(out.parent, root, label, info.filename)
            if info.filename in links:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.unlink(missing_ok=True)
                os.symlink(links[info.filename], out)
            elif info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                _confined(out.parent, root, label, info.filename)
                if out.is_symlink():
                    out.unlink()
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    out.chmod(mode | stat.S_IRUSR | stat.S_IWUSR)


def _confined(directory: Path, root: str, label: str, member: str) -> None:
    """An earlier link inside the archive must not carry a later member outside."""
    real = os.path.realpath(directory)
    if os.path.commonpath([root, real]) != root:
        raise FetchError(f"refusing to unpack {label}: member {member!r} would be written "
                         f"outside the sandbox through a link")


def _extract_tar(archive: Path, dest: Path, config: FetcherConfig, label: str) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        _limits(len(members), sum(m.size for m in members if m.isfile()), config, label)
        for m in members:
            _check_name(m.name, label)
            if m.issym():
                _check_link(m.name, m.linkname, label)
            elif m.islnk():
                _check_name(m.linkname, label)
            elif not (m.isfile() or m.isdir()):
                raise FetchError(f"refusing to unpack {label}: member {m.name!r} is a device, "
                                 f"fifo or other special file")
        # The 'data' filter repeats these checks at write time, links included.
        tf.extractall(dest, filter="data")
