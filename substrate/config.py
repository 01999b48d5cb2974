"""offerpool's user configuration: one TOML file, environment variables, command-line flags.

Every setting has a name (``submit.max_retries``), a type, a default and an environment
variable (``OFFERPOOL_SUBMIT_MAX_RETRIES``). The value in force comes from the first of:

1. a command-line flag (when the command has one for it),
2. the environment variable,
3. the config file — ``--config PATH``, else ``$OFFERPOOL_CONFIG``, else
   ``~/.offerpool/config.toml`` when it exists — where ``submit.max_retries`` is the key
   ``max_retries`` in a ``[submit]`` table, and top-level names are top-level keys,
4. the default.

``offerpool config`` prints every setting with its value and where it came from. Unknown keys
in the file and values of the wrong type are errors naming the file and the key.

Examples
--------
>>> cfg = load(env={"OFFERPOOL_SUBMIT_MAX_RETRIES": "5"}, flags={"master": "h:1"}, path="")
>>> cfg["submit.max_retries"], cfg.source("submit.max_retries")
(5, 'env OFFERPOOL_SUBMIT_MAX_RETRIES')
>>> cfg["master"], cfg.source("master")
('h:1', 'flag')
>>> cfg.source("agent.sandbox_keep")
'default'
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from substrate.errors import InvalidRequest


@dataclass(frozen=True)
class Setting:
    """One configurable value."""

    name: str
    kind: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        """Its environment variable: ``OFFERPOOL_`` + the name in capitals, dots as ``_``."""
        return "OFFERPOOL_" + self.name.replace(".", "_").upper()


_HOME = os.path.join("~", ".offerpool")
SETTINGS: tuple[Setting, ...] = (
    Setting("master", str, "", "HOST:PORT of the master that dataflow.Context() and "
            "genetic.evolve() use when given no master (empty: their own default)"),
    Setting("state_dir", str, _HOME, "where `offerpool submit` records drivers"),
    Setting("submit.max_retries", int, 3, "relaunches of a --supervise'd driver"),
    Setting("submit.cpus", float, 0.5, "cpus of a --cluster driver task"),
    Setting("submit.mem", float, 256.0, "MiB of a --cluster driver task"),
    Setting("ship.auto", bool, True, "ship the driver's own modules to executors"),
    Setting("ship.host", str, "127.0.0.1", "address the driver's file server binds to "
            "(executors on other machines must reach it)"),
    Setting("agent.work_dir", str, os.path.join(_HOME, "agent"), "agent sandboxes and caches"),
    Setting("agent.sandbox_keep", float, 7 * 24 * 3600.0,
            "seconds a finished sandbox is kept (empty disk)"),
    Setting("agent.gc_headroom", float, 0.1, "disk fraction kept free; retention shrinks as "
            "usage approaches 1 - headroom"),
    Setting("agent.gc_interval", float, 60.0, "seconds between sandbox collections"),
    Setting("agent.fetch_max_bytes", int, 1 << 30, "largest URI an agent fetches"),
    Setting("agent.fetch_max_extracted_bytes", int, 4 << 30, "largest unpacked archive"),
    Setting("agent.fetch_cache_max_bytes", int, 2 << 30, "size of the agent's fetch cache"),
)
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULT_PATH = os.path.join(_HOME, "config.toml")


def _convert(setting: Setting, value: Any, where: str) -> Any:
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        if kind is str and not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{where}: {setting.name} must be a {kind.__name__}, "
                             f"got {value!r}") from None


class Config(Mapping[str, Any]):
    """The values in force and where each came from (``flag``, ``env X``, ``file P``, ``default``)."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str], path: str) -> None:
        self._values, self._sources, self.path = values, sources, path

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def source(self, name: str) -> str:
        """Where the value of ``name`` came from."""
        return self._sources[name]

    def path_value(self, name: str) -> str:
        """A path setting with ``~`` expanded."""
        return os.path.expanduser(self._values[name])

    def describe(self) -> str:
        """A table of every setting, its value and its source."""
        width = max(len(n) for n in self._values)
        lines = [f"config file: {self.path or '(none)'}"]
        for name, value in self._values.items():
            lines.append(f"{name:<{width}}  {value!r:<24}  ({self._sources[name]})")
        return "\n".join(lines)


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise InvalidRequest(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"config file {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(BY_NAME))
    if unknown:
        raise InvalidRequest(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return flat


def config_path(explicit: Optional[str] = None,
                env: Optional[Mapping[str, str]] = None) -> str:
    """Which file is read: ``explicit``, else ``$OFFERPOOL_CONFIG``, else the default if present.

    An empty ``explicit`` string means: no file.
    """
    env = os.environ if env is None else env
    if explicit is not None:
        return explicit
    if env.get("OFFERPOOL_CONFIG"):
        return env["OFFERPOOL_CONFIG"]
    default = os.path.expanduser(DEFAULT_PATH)
    return default if os.path.isfile(default) else ""


def load(*, flags: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None,
         path: Optional[str] = None) -> Config:
    """The configuration in force; ``flags`` maps setting names to flag values (None: unset)."""
    env = os.environ if env is None else env
    path = config_path(path, env)
    from_file = _read_file(path) if path else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        flag = (flags or {}).get(s.name)
        if flag is not None:
            values[s.name], sources[s.name] = _convert(s, flag, "flag"), "flag"
        elif env.get(s.env, "") != "":
            values[s.name] = _convert(s, env[s.env], f"environment variable {s.env}")
            sources[s.name] = f"env {s.env}"
        elif s.name in from_file:
            values[s.name] = _convert(s, from_file[s.name], f"config file {path}")
            sources[s.name] = f"file {path}"
        else:
            values[s.name], sources[s.name] = s.default, "default"
    return Config(values, sources, path)


def default_master(fallback: str) -> str:
    """The master a framework uses when its caller gives none: the ``master`` setting
    (``$OFFERPOOL_MASTER``, set by ``offerpool submit``, or the config file), else ``fallback``."""
    try:
        value = load()["master"]
    except InvalidRequest:
        value = os.environ.get("OFFERPOOL_MASTER", "")
    return value or fallback
