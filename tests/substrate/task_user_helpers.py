"""Helpers for the tests of tasks running as other OS users: a work dir other users can
traverse, and probes run in a child process that has taken another user's identity."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest


def users_skip_reason() -> str:
    """Empty when these tests can run here, else why not."""
    if os.geteuid() != 0:
        return "switching users needs an agent running as root"
    for name in ("nobody", "daemon"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            return f"no user {name!r} on this host"
    if shutil.which("setpriv", path="/usr/bin:/bin") is None:
        return "setpriv (util-linux) is not installed"
    return ""


@pytest.fixture
def open_dir():
    """A fresh directory every user may traverse (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="offerpool-users-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_user(name: str, probe: Callable[[], int]) -> int:
    """Run ``probe`` in a forked child that became user ``name``; its return is the exit code.

    The child only makes system calls and exits (``os._exit``): nothing of the parent's
    threads is used after the fork.
    """
    entry = pwd.getpwnam(name)
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([entry.pw_gid])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            code = probe()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def can_connect(path: str) -> Callable[[], int]:
    """A probe: 0 when a Unix socket at ``path`` accepts a connection, 13 on EACCES."""
    def probe() -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return 0
        except PermissionError:
            return 13
        except OSError:
            return 1
        finally:
            s.close()
    return probe


def interpreter_unreachable(user: str) -> str:
    """Empty when ``user`` can run this interpreter and import substrate and grpc, else why."""
    from substrate.agent import users
    from substrate.agent.users import resolve

    try:
        users.can_execute(sys.executable, Path("/"), os.defpath, resolve(user, False))
    except OSError as exc:
        return str(exc)
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    entry = pwd.getpwnam(user)
    env = {"PATH": os.defpath, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HOME": "/"}
    try:
        proc = subprocess.run(
            [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
             "--", sys.executable, "-c", "import grpc, substrate"],
            env=env, cwd="/", capture_output=True, timeout=60)
    except OSError as exc:
        return f"user {user!r} cannot run {sys.executable}: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return f"user {user!r} cannot run {sys.executable} with substrate: {last}"
    return ""
