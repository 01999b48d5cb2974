"""What a task may ask its agent to fetch into the sandbox before launch (Mesos' URIs).

This module holds the :class:`FetchURI` dataclass and its validation; the agent-side
download, cache and archive extraction live in :mod:`substrate.agent.fetcher`.

Examples
--------
>>> uri = FetchURI("https://example.org/data/words.tar.gz", extract=True)
>>> uri.name
'words.tar.gz'
>>> FetchURI("ftp://x/y").validate()
Traceback (most recent call last):
...
substrate.errors.InvalidRequest: URI 'ftp://x/y': only http, https and file URIs can be fetched
"""
from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from substrate.errors import InvalidRequest

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SCHEMES = ("http", "https", "file")


@dataclass
class FetchURI:
    """A file fetched into the sandbox before its command or executor starts.

    Parameters
    ----------
    value : str
        ``http://``, ``https://``, ``file://`` URI, or an absolute path on the agent.
    sha256 : str
        Expected lowercase hex digest of the downloaded bytes; empty: not checked.
    extract : bool
        Unpack a zip or tar (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``)
        archive into the sandbox instead of keeping it as a file.
    cache : bool
        Let the agent reuse a cached copy (keyed by ``sha256`` when given, else by URI).
    executable : bool
        Make the fetched file executable.
    output_file : str
        Name in the sandbox; default: the last segment of the URI's path.
    """

    value: str
    sha256: str = ""
    extract: bool = False
    cache: bool = False
    executable: bool = False
    output_file: str = ""

    @property
    def scheme(self) -> str:
        """``http``, ``https`` or ``file`` (an absolute path counts as ``file``)."""
        if self.value.startswith("/"):
            return "file"
        return urllib.parse.urlsplit(self.value).scheme.lower()

    @property
    def name(self) -> str:
        """The file name in the sandbox."""
        if self.output_file:
            return self.output_file
        path = self.value if self.value.startswith("/") else \
            urllib.parse.unquote(urllib.parse.urlsplit(self.value).path)
        return os.path.basename(path.rstrip("/"))

    def validate(self) -> "FetchURI":
        """Check scheme, digest and name; returns ``self`` or raises :class:`InvalidRequest`."""
        if self.scheme not in SCHEMES:
            raise InvalidRequest(
                f"URI {self.value!r}: only http, https and file URIs can be fetched")
        if self.sha256 and not _SHA256.match(self.sha256):
            raise InvalidRequest(f"URI {self.value!r}: sha256 must be 64 lowercase hex digits")
        name = self.name
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise InvalidRequest(f"URI {self.value!r}: cannot use {name!r} as a file name "
                                 f"in the sandbox")
        if name in ("stdout", "stderr"):
            raise InvalidRequest(f"URI {self.value!r}: {name!r} would overwrite the sandbox's "
                                 f"log; set output_file")
        return self
