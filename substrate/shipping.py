"""Shipping a driver's own code and files to every executor it starts, on any agent.

A driver (a script, a notebook) imports its own modules — ``helpers.py`` next to the script —
and registers extra code (``--py-files``, ``Context.addPyFile``) and data files (``--files``,
``Context.addFile``). Executors on other machines have none of that. This module keeps one
:class:`Shipment` per driver process: it copies each item into a private staging directory
(directories become zip archives), serves them over a small HTTP server bound to
``ship.host`` (loopback by default) under a random token, and adds them as ``uris`` (with their
sha256) to every executor made by :meth:`ExecutorInfo.for_python_module`. The agent's fetcher
puts them in the executor's sandbox; the executor's ``PYTHONPATH`` names the sandbox (``.``,
relative to the sandbox it starts in) and shipped zips, and no longer names the driver's own
directories, so the executor imports the shipped copies.

Modules imported by the driver from outside the standard library, site-packages and
offerpool's own tree are shipped automatically (``ship.auto``). Items added after an executor
started reach it through :func:`apply_manifest`, which a framework's executor calls with the
bytes of :meth:`Shipment.manifest` (dataflow sends them as a framework message).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "tool.py").write_text("X = 1\\n")
>>> s = Shipment(auto=False)
>>> s.add_py_file(str(d / "tool.py")).name
'tool.py'
>>> try:
...     s.add_py_file(str(d / "missing.py"))
... except ShippingError as exc:
...     print(str(exc).endswith("missing.py: no such file or directory"))
True
>>> s.close()
"""
from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import os
import secrets
import shutil
import site
import sys
import sysconfig
import tempfile
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from substrate.errors import SubstrateError
from substrate.uris import FetchURI

ENV_PY_FILES = "OFFERPOOL_PY_FILES"
ENV_FILES = "OFFERPOOL_FILES"
#: Set in every executor's environment: where it reads the current manifest.
ENV_MANIFEST = "OFFERPOOL_SHIP_MANIFEST"
MANIFEST = "_/manifest"   # never an item's name: items have no "/"
PY_SUFFIXES = (".py", ".zip", ".egg", ".whl")


class ShippingError(SubstrateError):
    """A file given to ship cannot be shipped; the message names it."""


@dataclass
class ShippedFile:
    """One item of a shipment: ``name`` in the sandbox, served from ``staged``."""

    name: str
    source: str
    staged: str
    sha256: str
    kind: str       # "py" (module file), "pkg" (package dir, zipped), "zip", "file", "dir"

    @property
    def extract(self) -> bool:
        return self.kind in ("pkg", "dir")

    @property
    def path_entry(self) -> Optional[str]:
        """What goes on the executor's ``sys.path``, relative to the sandbox."""
        if self.kind in ("py", "pkg"):
            return "."
        if self.kind == "zip":
            return self.name
        return None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _excluded_roots() -> list[str]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    try:
        roots.update(site.getsitepackages())
    except AttributeError:
        pass
    if site.ENABLE_USER_SITE and site.USER_SITE:
        roots.add(site.USER_SITE)
    roots.update({sys.prefix, sys.base_prefix, sys.exec_prefix})
    # offerpool itself is installed on every machine, never shipped.
    roots.add(str(Path(__file__).resolve().parent.parent))
    return [os.path.realpath(r) for r in roots if r]


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def user_modules() -> dict[str, str]:
    """Top-level modules this process imported from the user's own files: name -> path.

    A module counts when its file is Python source outside the standard library,
    site-packages, the interpreter's prefix and offerpool's own tree. A package is given by
    its directory.
    """
    roots = _excluded_roots()
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if "." in name or name in ("__main__", "__mp_main__"):
            continue
        filename = getattr(module, "__file__", None)
        if not filename or not filename.endswith(".py"):
            continue
        path = os.path.realpath(filename)
        if _under(path, roots) or not os.path.isfile(path):
            continue
        if os.path.basename(path) == "__init__.py":
            path = os.path.dirname(path)
        found[name] = path
    return found


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_FileServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        token, _, name = urllib.parse.unquote(self.path).lstrip("/").partition("/")
        if name == MANIFEST and self.server.lookup(token, "") is not False:
            body = self.server.shipment.manifest()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
            return
        item = self.server.lookup(token, name)
        if not item:
            self.send_error(404, "not shipped")
            return
        with open(item.staged, "rb") as f:
            self.send_response(200)
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            shutil.copyfileobj(f, self.wfile, 1 << 20)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (signature of the base)
        pass


class _FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, shipment: "Shipment") -> None:
        super().__init__((host, 0), _Handler)
        self.shipment = shipment
        self.token = secrets.token_urlsafe(24)

    def lookup(self, token: str, name: str):
        """The item ``name``; False for a wrong token."""
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return False
        return self.shipment.items.get(name)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/{self.token}/"


class Shipment:
    """What one driver process ships to its executors (see the module docstring).

    Parameters
    ----------
    auto : bool
        Also ship the modules found by :func:`user_modules` whenever executors are made.
    host : str
        Address the file server binds to.
    """

    def __init__(self, auto: bool = True, host: str = "127.0.0.1") -> None:
        self.auto, self.host = auto, host
        self.items: dict[str, ShippedFile] = {}
        self._lock = threading.RLock()
        self._staging = tempfile.mkdtemp(prefix="offerpool-ship-")
        self._server: Optional[_FileServer] = None
        self.version = 0

    # -------------------------------------------------------------- adding
    def add_py_file(self, path: str) -> ShippedFile:
        """Ship Python code: a ``.py`` module, a package directory, or a ``.zip``/``.egg``/``.whl``."""
        src = self._readable(path)
        if os.path.isdir(src):
            if not os.path.isfile(os.path.join(src, "__init__.py")):
                raise ShippingError(f"cannot ship {path} as Python code: a directory needs an "
                                    f"__init__.py to be a package")
            return self._add(src, os.path.basename(src) + ".zip", "pkg")
        if not src.endswith(PY_SUFFIXES):
            raise ShippingError(f"cannot ship {path} as Python code: expected a .py, .zip, "
                                f".egg or .whl file, or a package directory")
        return self._add(src, os.path.basename(src), "py" if src.endswith(".py") else "zip")

    def add_file(self, path: str) -> ShippedFile:
        """Ship a data file (or a directory, unpacked under its own name) to every sandbox."""
        src = self._readable(path)
        if os.path.isdir(src):
            return self._add(src, os.path.basename(src) + ".zip", "dir")
        return self._add(src, os.path.basename(src), "file")

    def add_user_modules(self) -> None:
        """Ship every module :func:`user_modules` finds (once each)."""
        for path in user_modules().values():
            with self._lock:
                known = any(item.source == path for item in self.items.values())
            if not known:
                try:
                    self.add_py_file(path)
                except ShippingError:
                    pass  # a name taken by an explicitly shipped file wins

    @staticmethod
    def _readable(path: str) -> str:
        src = os.path.realpath(os.path.expanduser(path))
        if not os.path.exists(src):
            raise ShippingError(f"cannot ship {path}: no such file or directory")
        if not os.access(src, os.R_OK) or (os.path.isdir(src) and not os.access(src, os.X_OK)):
            raise ShippingError(f"cannot ship {path}: permission denied")
        if os.path.isfile(src):
            try:
                open(src, "rb").close()
            except OSError as exc:
                raise ShippingError(f"cannot ship {path}: {exc.strerror}") from None
        return src

    def _add(self, src: str, name: str, kind: str) -> ShippedFile:
        with self._lock:
            old = self.items.get(name)
            if old is not None and old.source != src:
                raise ShippingError(f"cannot ship {src}: {old.source} is already shipped "
                                    f"under the name {name!r}")
            staged = os.path.join(self._staging, name)
            try:
                if kind in ("pkg", "dir"):
                    _zip_dir(src, staged)
                else:
                    shutil.copyfile(src, staged)
            except OSError as exc:
                raise ShippingError(f"cannot ship {src}: {exc.strerror or exc}") from None
            item = ShippedFile(name, src, staged, _sha256(staged), kind)
            if old is None or old.sha256 != item.sha256:
                self.version += 1
            self.items[name] = item
            return item

    # -------------------------------------------------------------- serving
    def _base_url(self) -> str:
        with self._lock:
            if self._server is None:
                self._server = _FileServer(self.host, self)
                threading.Thread(target=self._server.serve_forever, daemon=True,
                                 name="offerpool-ship").start()
            return self._server.base_url

    def uris(self) -> list[FetchURI]:
        """The items as URIs for an executor's command."""
        with self._lock:
            if not self.items:
                return []
            base = self._base_url()
            return [FetchURI(base + urllib.parse.quote(i.name), sha256=i.sha256,
                             extract=i.extract) for i in self.items.values()]

    def path_entries(self) -> list[str]:
        """``sys.path`` entries, relative to a sandbox, that the items need."""
        with self._lock:
            entries = [i.path_entry for i in self.items.values() if i.path_entry]
        return list(dict.fromkeys(entries))

    def manifest(self) -> bytes:
        """JSON of every item, for :func:`apply_manifest` in running executors."""
        return json.dumps({"uris": [u.__dict__ for u in self.uris()],
                           "path": self.path_entries()}).encode()

    def apply(self, info):
        """Add the shipment to an :class:`~substrate.ExecutorInfo` (in place; returned)."""
        if self.auto:
            self.add_user_modules()
        # Items added later are pulled from here by running executors (sync_from_driver).
        info.command.environment[ENV_MANIFEST] = self._base_url() + MANIFEST
        uris = self.uris()
        if not uris:
            return info
        shipped_dirs = {os.path.dirname(i.source) for i in self.items.values()
                        if i.kind in ("py", "pkg")}
        shipped_dirs.add(os.path.realpath(self._staging))  # addPyFile put it on sys.path
        shipped_dirs.update(os.path.realpath(i.staged) for i in self.items.values())
        env = info.command.environment
        old = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        kept = [p for p in old if os.path.realpath(p) not in shipped_dirs]
        env["PYTHONPATH"] = os.pathsep.join(self.path_entries() + kept)
        known = {u.value for u in info.command.uris}
        info.command.uris.extend(u for u in uris if u.value not in known)
        return info

    def local_path(self, name: str) -> Optional[str]:
        """The driver-side copy of a shipped file, or None."""
        item = self.items.get(name)
        return item.staged if item is not None else None

    def close(self) -> None:
        """Stop serving and remove the staging directory."""
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
        shutil.rmtree(self._staging, ignore_errors=True)


def _zip_dir(src: str, dest: str) -> None:
    """Zip ``src`` so that it unpacks as ``<basename>/...``; links are not followed out."""
    base = os.path.dirname(src)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for fname in sorted(files):
                full = os.path.join(root, fname)
                if os.path.islink(full) or fname.endswith((".pyc", ".pyo")):
                    continue
                zf.write(full, os.path.relpath(full, base))


# ------------------------------------------------------------------ the process's shipment
_shipment: Optional[Shipment] = None
_shipment_lock = threading.Lock()


def shipment() -> Shipment:
    """This process's shipment, created on first use with ``--py-files``/``--files`` from
    ``offerpool submit`` (``$OFFERPOOL_PY_FILES``, ``$OFFERPOOL_FILES``) already added."""
    global _shipment
    with _shipment_lock:
        if _shipment is None:
            from substrate.config import load
            cfg = load()
            s = Shipment(auto=cfg["ship.auto"], host=cfg["ship.host"])
            for path in filter(None, os.environ.get(ENV_PY_FILES, "").split(",")):
                s.add_py_file(path)
            for path in filter(None, os.environ.get(ENV_FILES, "").split(",")):
                s.add_file(path)
            _shipment = s
        return _shipment


def ship_with(info):
    """:meth:`Shipment.apply` with this process's shipment (used by ``for_python_module``)."""
    return shipment().apply(info)


def sandbox_dir() -> Optional[str]:
    """The sandbox this process runs in (an executor or a cluster-mode driver), else None."""
    return os.environ.get("SUBSTRATE_SANDBOX") or None


def shipped_file(name: str) -> str:
    """Absolute path of a shipped file ``name``, in the driver or in an executor.

    Raises
    ------
    FileNotFoundError
        When nothing of that name was shipped here.
    """
    if _shipment is not None and _shipment.local_path(name):
        return _shipment.local_path(name)  # type: ignore[return-value]
    box = sandbox_dir()
    if box is not None and os.path.exists(os.path.join(box, name)):
        return os.path.join(box, name)
    raise FileNotFoundError(f"no file named {name!r} was shipped to this process")


def sync_from_driver(timeout: float = 60.0) -> list[str]:
    """In an executor: fetch what its driver ships now and is missing here (names fetched).

    Frameworks call it when an executor starts and when their driver says a file was added
    (dataflow's ``addPyFile``). Does nothing outside an executor made by
    :meth:`~substrate.ExecutorInfo.for_python_module`.
    """
    import urllib.request

    url = os.environ.get(ENV_MANIFEST)
    if not url:
        return []
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (our driver)
            data = reply.read()
    except OSError as exc:
        raise ShippingError(f"cannot read the driver's shipped files from {url}: {exc}") \
            from None
    return apply_manifest(data)


def apply_manifest(data: bytes, dest: Optional[str] = None) -> list[str]:
    """In an executor: fetch what :meth:`Shipment.manifest` lists and is missing, then put
    its code on ``sys.path``. Returns the names fetched.

    Raises
    ------
    SubstrateError
        When a file cannot be fetched or fails its checksum (the message names it).
    """
    from substrate.agent.fetcher import FetcherConfig, fetch_one

    doc = json.loads(data)
    dest = dest or sandbox_dir() or os.getcwd()
    fetched = []
    for raw in doc.get("uris", []):
        uri = FetchURI(**raw)
        target = os.path.join(dest, uri.name)
        if os.path.exists(target) and uri.sha256 and _sha256(target) == uri.sha256:
            continue
        fetch_one(uri, Path(dest), FetcherConfig())
        fetched.append(uri.name)
    for entry in doc.get("path", []):
        full = os.path.normpath(os.path.join(dest, entry))
        if full not in sys.path:
            sys.path.insert(0, full)
    importlib.invalidate_caches()
    return fetched
