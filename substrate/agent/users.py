"""Which OS user a task runs as, and handing its files over to that user.

A framework names the user its tasks run as in ``FrameworkInfo.user``; the master's ACL
(``run_tasks``) decides which principal may name which user. On the agent, :func:`resolve`
turns that name into a :class:`TaskUser` (uid, gid, supplementary groups, home) or refuses:

* an empty name: the task runs as the agent's own user, as it always did (no switch);
* a name the host does not know: refused, naming the user;
* root (any name whose uid is 0): refused unless the agent was started with
  ``allow_root_tasks`` -- "never root unless allowed", whatever the ACL says;
* any other user while the agent is not root: refused, since only root can switch users --
  unless it is the agent's own user, which needs no switch.

A refusal is :class:`UserRefused`, which carries the task status reason; the launcher turns it
into TASK_FAILED before anything is created or started. How the process then takes the user's
identity is :mod:`substrate.agent.processes`' business (``setgroups``, ``setgid``, ``setuid``
in that order, inside the task's container); this module also hands the files a task must own
over to it without ever following a link planted in a user-writable directory.

Examples
--------
>>> resolve("", allow_root=False) is None
True
>>> resolve("no-such-user-here", allow_root=False)
Traceback (most recent call last):
...
substrate.agent.users.UserRefused: cannot run the task as user 'no-such-user-here': no such user on this host
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from substrate.errors import SubstrateError
from substrate.v1 import pb

S = pb.TaskStatus


class UserRefused(SubstrateError):
    """A task cannot run as the user it names; ``reason`` is the task status reason."""

    def __init__(self, message: str, reason: int = S.CONTAINER_LAUNCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class TaskUser:
    """An OS identity a task process takes: ``setgroups(groups)``, ``setgid``, ``setuid``.

    Examples
    --------
    >>> u = TaskUser("nobody", 65534, 65534, (65534,), "/nonexistent")
    >>> u.to_dict()["uid"], TaskUser.from_dict(u.to_dict()) == u
    (65534, True)
    """

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def to_dict(self) -> dict:
        """A JSON-able form (the agent's checkpoint keeps it for recovered executors)."""
        return {"name": self.name, "uid": self.uid, "gid": self.gid,
                "groups": list(self.groups), "home": self.home}

    @classmethod
    def from_dict(cls, data: dict) -> "TaskUser":
        return cls(str(data["name"]), int(data["uid"]), int(data["gid"]),
                   tuple(int(g) for g in data.get("groups", ())), str(data.get("home", "/")))

    def environment(self) -> dict[str, str]:
        """``HOME``, ``USER`` and ``LOGNAME`` of this user."""
        return {"HOME": self.home or "/", "USER": self.name, "LOGNAME": self.name}


def agent_user_name() -> str:
    """The name of the user the agent runs as (its uid as text when it has no name)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def resolve(requested: str, allow_root: bool) -> Optional[TaskUser]:
    """The identity a task of a framework naming ``requested`` takes; None: no switch.

    Raises
    ------
    UserRefused
        See the module docstring; the message names the user.
    """
    if not requested:
        return None
    try:
        entry = pwd.getpwnam(requested)
    except (KeyError, ValueError):   # ValueError: a NUL in the name
        raise UserRefused(f"cannot run the task as user {requested!r}: no such user on "
                          f"this host") from None
    me = os.geteuid()
    if entry.pw_uid == 0 and not allow_root:
        raise UserRefused(f"cannot run the task as user {requested!r}: running tasks as root "
                          f"is not allowed on this agent (start it with --allow-root-tasks)",
                          S.TASK_UNAUTHORIZED)
    if entry.pw_uid == me:
        return None                     # already that user: nothing to switch
    if me != 0:
        raise UserRefused(f"cannot run the task as user {requested!r}: the agent runs as "
                          f"{agent_user_name()!r}, not root, so it cannot switch users")
    try:
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    except OSError:
        groups = (entry.pw_gid,)
    return TaskUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")


def group_name(gid: int) -> str:
    """A group's name, or its number as text."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# ---------------------------------------------------------------------- files


def let_through(*directories: Path) -> None:
    """Let every user pass through (not list) the agent's ``directories`` on the way to a
    user's sandbox or shared directory, whatever the agent's umask made them."""
    for directory in directories:
        mode = directory.stat().st_mode
        if mode & 0o011 != 0o011:
            os.chmod(directory, stat.S_IMODE(mode) | 0o011)


def take_back(directory: Path) -> None:
    """Make an existing ``directory`` the agent's again before the agent writes into it.

    The agent (root) fetches files into a sandbox; a sandbox a task's user already owns could
    meanwhile gain entries from that user's other processes. Owned by root (0755) while the
    agent works in it, it cannot; :func:`hand_over` gives it back.
    """
    if directory.is_symlink() or not directory.is_dir():
        return
    os.lchown(directory, os.geteuid(), os.getegid())
    os.chmod(directory, 0o755)


def hand_over(directory: Path, user: TaskUser, recursive: bool = False) -> None:
    """Give ``directory`` (and with ``recursive`` all it holds) to ``user``.

    Links are re-owned themselves, never followed (``lchown``), so a link a task planted
    cannot make the agent give away a file outside the directory. The directory becomes
    ``0750``: the user and its group may read it, other users may not.
    """
    os.lchown(directory, user.uid, user.gid)
    os.chmod(directory, 0o750)
    if not recursive:
        return
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), user.uid, user.gid)
            except FileNotFoundError:
                pass


def open_output(path: Path, user: Optional[TaskUser]) -> int:
    """Open a task's ``stdout``/``stderr`` file for appending, owned by ``user``.

    ``O_NOFOLLOW``: a link the task's user left under that name is refused instead of
    letting the agent append the task's output to whatever it points to.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o640)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise PermissionError(f"{path} is not a plain file of its own")
        if user is not None:
            os.fchown(fd, user.uid, user.gid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def can_execute(program: str, cwd: Path, path_env: str, user: TaskUser) -> None:
    """Raise the error ``exec`` as ``user`` would give, before a wrapper hides it.

    Permission is judged from the mode bits of the file and of every directory on its way
    (owner, group or other, as the kernel would pick them); POSIX ACLs are not consulted.
    """
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else cwd / program
    else:
        found = shutil.which(program, path=path_env or os.defpath)
        if found is None:
            raise FileNotFoundError(f"no such program on PATH: {program!r}")
        path = Path(found)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {program!r}")
    real = Path(os.path.realpath(path))
    ways = list(reversed(real.parents))
    inside = os.path.realpath(cwd)
    if not os.path.isabs(program) and os.path.commonpath([inside, real]) == inside:
        # Relative to the working directory the program starts in: only the way down from
        # there counts (the sandbox's own parents need not be open to the user).
        ways = [d for d in ways if os.path.commonpath([inside, d]) == inside]
    for directory in ways:
        if not _allowed(directory.stat(), user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            raise PermissionError(f"user {user.name!r} cannot reach {program!r}: no search "
                                  f"permission on {directory}")
    if not _allowed(real.stat(), user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
        raise PermissionError(f"user {user.name!r} may not execute {program!r}")


def _allowed(st: os.stat_result, user: TaskUser, owner: int, group: int, other: int) -> bool:
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return bool(st.st_mode & owner)
    if st.st_gid == user.gid or st.st_gid in user.groups:
        return bool(st.st_mode & group)
    return bool(st.st_mode & other)
