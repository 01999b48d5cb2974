"""Child processes of the agent: sandboxes, spawning, exit watching and group kills.

This module owns how a task's or an executor's program becomes an OS process: the sandbox
directory (``work_dir/sandboxes/<framework_id>/<name>/``, never built from an unsafe id), the
argv (``/bin/sh -c`` for shell commands), a new session and process group per child, stdout and
stderr captured to files in the sandbox, the OS user the program runs as (see
:mod:`substrate.agent.users`), and killing the *whole group* (SIGTERM, grace, SIGKILL).
Exit is observed without threads where Linux allows it (a pidfd in the event loop), with one
waiting thread per child elsewhere. What a process *means* (task states, executors, status
updates) is left to :mod:`substrate.agent.core`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

from substrate.agent import users
from substrate.errors import InvalidRequest
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.agent.isolation import Container, Limitation
    from substrate.agent.users import TaskUser

log = logging.getLogger(__name__)

_BAD_ID_CHARS = ("/", "\\", "\0")


def is_safe_id(value: str) -> bool:
    """True when an id may name a directory: non-empty, no separators or NUL, not ``.``/``..``.

    Examples
    --------
    >>> is_safe_id("task-1"), is_safe_id("../etc"), is_safe_id(".."), is_safe_id("")
    (True, False, False, False)
    """
    if not value or value in (".", ".."):
        return False
    return not any(c in value for c in _BAD_ID_CHARS)


def sandbox_path(work_dir: str | os.PathLike[str], framework_id: str, name: str) -> Path:
    """The sandbox of an executor or command task, ``work_dir/sandboxes/<framework>/<name>``.

    Raises
    ------
    InvalidRequest
        When either id could escape the sandbox root.

    Examples
    --------
    >>> str(sandbox_path("/var/lib/agent", "fw-1", "exec-0"))
    '/var/lib/agent/sandboxes/fw-1/exec-0'
    >>> sandbox_path("/w", "fw", "..")
    Traceback (most recent call last):
    ...
    substrate.errors.InvalidRequest: unsafe id for a sandbox path: '..'
    """
    for part in (framework_id, name):
        if not is_safe_id(part):
            raise InvalidRequest(f"unsafe id for a sandbox path: {part!r}")
    return Path(work_dir) / "sandboxes" / framework_id / name


def command_argv(command: "pb.CommandInfo") -> list[str]:
    """The argv for a :class:`CommandInfo`: ``/bin/sh -c value`` or ``[value, *arguments]``."""
    if command.shell:
        return ["/bin/sh", "-c", command.value]
    return [command.value, *command.arguments]


def describe_exit(returncode: Optional[int]) -> str:
    """Human text for a ``Popen``-style return code (negative: killed by that signal; None:
    unknown, for a process adopted after an agent restart, which the agent cannot reap).

    Examples
    --------
    >>> describe_exit(3), describe_exit(-9)
    ('exited with status 3', 'killed by signal SIGKILL')
    """
    if returncode is None:
        return "exited (status unknown: it outlived the agent that started it)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name}"
    return f"exited with status {returncode}"


def process_start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, from ``/proc``); empty if it is gone.

    Together with the pid it names one process: a pid recycled after a crash has another
    start time.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] == "Z":
        return ""       # a zombie is as good as gone
    return fields[19] if len(fields) > 19 else ""


class GroupProcess:
    """Waiting for, terminating and killing a process group led by a process whose exit
    resolves ``exited``; subclasses say how to signal the group."""

    exited: asyncio.Future

    def signal_group(self, sig: int) -> bool:
        raise NotImplementedError

    async def wait(self) -> Optional[int]:
        """Wait for the leader to exit and return its return code (None if unknown)."""
        return await asyncio.shield(self.exited)

    async def terminate(self, grace: float) -> Optional[int]:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds if the leader is still alive."""
        if not self.exited.done():
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
            except asyncio.TimeoutError:
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        self.signal_group(signal.SIGKILL)  # stragglers that survived their leader
        return code

    def kill(self) -> None:
        """SIGKILL the whole group at once."""
        self.signal_group(signal.SIGKILL)


class ChildProcess(GroupProcess):
    """A spawned child in its own session and process group, with an awaitable exit.

    Create with :func:`spawn`. ``exited`` resolves to the ``Popen`` return code (negative for a
    signal) once the child is reaped; afterwards any processes left in its group (and in its
    isolation container, if it has one) are SIGKILLed so nothing outlives the task, and
    ``limitation`` says which container limit it hit, if any.
    """

    def __init__(self, popen: "subprocess.Popen[bytes]", sandbox: Path,
                 loop: asyncio.AbstractEventLoop,
                 container: "Optional[Container]" = None) -> None:
        self.popen = popen
        self.container = container
        self.limitation: "Optional[Limitation]" = None
        self.pid = popen.pid
        self.pgid = popen.pid          # start_new_session: the child leads its own group
        self.start_time = process_start_time(popen.pid)
        self.sandbox = sandbox
        self.exited: asyncio.Future[int] = loop.create_future()
        self._loop = loop
        self._pidfd: Optional[int] = None
        if container is not None:
            container.started(self.pid, self._limit_hit)
        self._watch()

    def _limit_hit(self, limitation: "Limitation") -> None:
        """A container limit was hit: the whole container goes (the reason is kept)."""
        self.kill()

    @property
    def returncode(self) -> Optional[int]:
        """The return code once exited, else None."""
        return self.exited.result() if self.exited.done() else None

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the process group and the container; False when the group is gone.

        The container catches what left the group (``setsid``, daemons); a cgroup also what
        was forked while the signal was on its way.
        """
        if self.container is not None:
            if sig == signal.SIGKILL:
                self.container.kill_all()
            else:
                self.container.signal_all(sig)
        try:
            os.killpg(self.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    # ------------------------------------------------------------------ exit watching

    def _watch(self) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(self.pid)
                self._loop.add_reader(self._pidfd, self._on_pidfd)
                return
            except (OSError, NotImplementedError, ValueError):
                if self._pidfd is not None:
                    os.close(self._pidfd)
                self._pidfd = None
        # No pidfd (old kernel, non-Linux): one thread blocks in waitpid for this child.
        self._loop.run_in_executor(None, self.popen.wait).add_done_callback(
            lambda fut: self._loop.call_soon_threadsafe(self._finish))

    def _on_pidfd(self) -> None:
        if self.popen.poll() is None:   # spurious wake-up
            return
        self._loop.remove_reader(self._pidfd)  # type: ignore[arg-type]
        os.close(self._pidfd)  # type: ignore[arg-type]
        self._pidfd = None
        self._finish()

    def _finish(self) -> None:
        if self.exited.done():
            return
        code = self.popen.returncode
        if code is None:
            code = self.popen.wait()
        self.signal_group(signal.SIGKILL)
        if self.container is not None:
            self.limitation = self.container.check_exit()
            self.container.isolator.release(self.container)
        self.exited.set_result(code)


def _check_executable(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    """Raise the OSError ``exec`` would, before a wrapper shell hides it behind exit 127."""
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else cwd / program
        if not path.exists():
            raise FileNotFoundError(f"no such file: {program!r}")
        if not os.access(path, os.X_OK):
            raise PermissionError(f"not executable: {program!r}")
    elif shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(f"no such program on PATH: {program!r}")


def isolated_argv(argv: list[str], prelude: list[str],
                  become: Optional[list[str]] = None) -> list[str]:
    """``argv`` run by a shell that first runs ``prelude`` (enter cgroups, set rlimits).

    The shell does this to itself and then ``exec``s the program under the same pid, so the
    program and everything it forks start inside the container: nothing escapes in between.
    ``become`` (a command that takes another user's identity and ``exec``s the rest) goes
    between: the prelude runs with the agent's rights, the program with the user's.

    Examples
    --------
    >>> isolated_argv(["python", "-c", "1"], ["ulimit -c 0"])[2].splitlines()
    ['ulimit -c 0', 'exec "$@"']
    >>> isolated_argv(["id"], [], ["setpriv", "--reuid=7"])[2]
    'exec setpriv --reuid=7 "$@"'
    """
    switch = "".join(f"{shlex.quote(word)} " for word in become or [])
    script = "\n".join([*prelude, f'exec {switch}"$@"'])
    return ["/bin/sh", "-c", script, "offerpool-isolated", *argv]


def become_argv(user: "TaskUser") -> list[str]:
    """``setpriv`` (util-linux) taking ``user``'s groups, gid and uid, in that order.

    Raises
    ------
    FileNotFoundError
        When ``setpriv`` is not installed.
    """
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if setpriv is None:
        raise FileNotFoundError("switching users inside a container needs 'setpriv' "
                                "(util-linux), which is not installed")
    groups = ",".join(str(g) for g in user.groups)
    return [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}",
            f"--groups={groups}" if groups else "--clear-groups", "--inh-caps=-all", "--"]


def spawn(command: "pb.CommandInfo", sandbox: Path, env: Mapping[str, str],
          loop: Optional[asyncio.AbstractEventLoop] = None,
          container: "Optional[Container]" = None,
          user: "Optional[TaskUser]" = None) -> ChildProcess:
    """Start ``command`` in ``sandbox`` (created if needed) as the leader of a new session.

    ``env`` is the complete environment. Output goes to ``sandbox/stdout`` and
    ``sandbox/stderr`` (appended, so a restarted executor keeps its history). With a
    ``container``, the child enters it before the program starts, and the container is
    released (destroyed) once the child has exited. With a ``user``, the sandbox and the
    output files belong to that user and the program runs with its uid, gid and groups.

    Raises
    ------
    OSError
        When the sandbox cannot be made or the program cannot be executed.
    """
    loop = loop or asyncio.get_running_loop()
    sandbox.mkdir(parents=True, exist_ok=True)
    if user is not None:
        users.let_through(sandbox.parent.parent, sandbox.parent)
        users.hand_over(sandbox, user)
    argv = command_argv(command)
    if not argv[0]:
        raise FileNotFoundError("empty command")
    prelude = container.prelude() if container is not None else []
    if user is not None:
        # setpriv, a fresh single-threaded process, takes the user's identity: changing ids
        # in a child forked from the agent (threads: gRPC, the event loop) is not safe.
        users.can_execute(argv[0], sandbox, env.get("PATH", os.defpath), user)
        become = become_argv(user)
        # The prelude needs the agent's rights (a cgroup's cgroup.procs is the agent's);
        # the user's identity is taken after it, just before the program.
        argv = isolated_argv(argv, prelude, become) if prelude else [*become, *argv]
    elif prelude:
        _check_executable(argv[0], sandbox, env)
        argv = isolated_argv(argv, prelude)
    out = users.open_output(sandbox / "stdout", user)
    try:
        err = users.open_output(sandbox / "stderr", user)
        try:
            popen = subprocess.Popen(
                argv, cwd=sandbox, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, start_new_session=True, close_fds=True,
            )
        finally:
            os.close(err)
    finally:
        os.close(out)
    log.debug("spawned pid %d in %s: %s", popen.pid, sandbox, argv)
    return ChildProcess(popen, sandbox, loop, container)
