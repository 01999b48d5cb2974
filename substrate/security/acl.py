"""ACL policies: who may do what, deny by default once a policy file is given.

A policy is a TOML or JSON file with one list of rules per action. Rules are tried in order
and the first whose ``principals`` and object list both match decides (``allow`` defaults to
true); when none matches, the answer is no. ``"*"`` matches any name, except that in
``run_tasks`` it never matches ``root``: running tasks as root must be allowed by name.

=====================  ===============================  ======================================
action                 object list                      object
=====================  ===============================  ======================================
register_frameworks    ``roles``                        the role a framework subscribes with
run_tasks              ``users``                        the OS user its tasks run as
teardown_frameworks    ``framework_principals``         the principal of the framework
view_state             (none)                           the master's state and metrics
read_sandboxes         ``framework_principals``         whose framework's files are read
register_agents        (none)                           an agent joining the master
drain_agents           (none)                           draining or reactivating an agent
=====================  ===============================  ======================================

A framework that names no user runs its tasks as the agent's own user; the policy treats
that as ``root`` (agents usually run as root), so it too must be allowed by name. Agents add
their own rule (:mod:`substrate.agent.users`): they refuse a framework naming ``root`` unless
started with ``--allow-root-tasks``, and switch to any other user only when they run as root.

Examples
--------
>>> policy = Policy.from_dict({
...     "register_frameworks": [{"principals": ["alice"], "roles": ["analytics"]}],
...     "run_tasks": [{"principals": ["*"], "users": ["*"]}],
... })
>>> policy.allows("register_frameworks", "alice", "analytics")
True
>>> policy.allows("register_frameworks", "bob", "analytics")
False
>>> policy.allows("run_tasks", "alice", "nobody"), policy.allows("run_tasks", "alice", "root")
(True, False)
>>> policy.allows("view_state", "alice")
False
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Optional

from substrate.errors import AccessDenied, InvalidRequest

#: action -> name of its object list (None: the action has no object).
ACTIONS: dict[str, Optional[str]] = {
    "register_frameworks": "roles",
    "run_tasks": "users",
    "teardown_frameworks": "framework_principals",
    "view_state": None,
    "drain_agents": None,
    "read_sandboxes": "framework_principals",
    "register_agents": None,
}
#: The user a framework without one runs its tasks as, for the policy's purposes.
DEFAULT_TASK_USER = "root"


@dataclass(frozen=True)
class Rule:
    principals: tuple[str, ...]
    objects: Optional[tuple[str, ...]]
    allow: bool

    def matches(self, action: str, principal: str, obj: Optional[str]) -> bool:
        if "*" not in self.principals and principal not in self.principals:
            return False
        if self.objects is None:
            return True
        if obj in self.objects:
            return True
        return "*" in self.objects and not (action == "run_tasks" and obj == "root")


class Policy:
    """An ordered rule list per action; :meth:`allows` answers, :meth:`check` raises."""

    def __init__(self, rules: dict[str, list[Rule]]) -> None:
        self.rules = rules

    @classmethod
    def from_dict(cls, data: dict) -> "Policy":
        if not isinstance(data, dict):
            raise InvalidRequest("an ACL policy must be a table/object of actions")
        rules: dict[str, list[Rule]] = {}
        for action, items in data.items():
            if action not in ACTIONS:
                raise InvalidRequest(f"unknown ACL action {action!r}; known: {sorted(ACTIONS)}")
            if not isinstance(items, list):
                raise InvalidRequest(f"ACL action {action!r} must be a list of rules")
            rules[action] = [_rule(action, item) for item in items]
        return cls(rules)

    @classmethod
    def load(cls, path: str) -> "Policy":
        """Read a ``.toml`` or ``.json`` policy file."""
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise InvalidRequest(f"cannot read the ACL file {path}: {exc}") from None
        try:
            data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InvalidRequest(f"ACL file {path} does not parse: {exc}") from None
        return cls.from_dict(data)

    def allows(self, action: str, principal: str, obj: Optional[str] = None) -> bool:
        """First matching rule's verdict; no match: deny."""
        if action not in ACTIONS:
            raise InvalidRequest(f"unknown ACL action {action!r}")
        for rule in self.rules.get(action, ()):
            if rule.matches(action, principal, obj):
                return rule.allow
        return False

    def check(self, action: str, principal: str, obj: Optional[str] = None) -> None:
        """Raise :class:`AccessDenied` with a readable reason unless allowed."""
        if not self.allows(action, principal, obj):
            what = action.replace("_", " ")
            target = f" ({ACTIONS[action].rstrip('s')} {obj!r})" if ACTIONS[action] else ""
            raise AccessDenied(f"the ACL policy does not let principal {principal!r} "
                               f"{what}{target}")


def _names(action: str, item: dict, key: str) -> tuple[str, ...]:
    value = item.get(key)
    if value is None:
        raise InvalidRequest(f"an ACL rule of {action!r} needs {key!r}")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{action}.{key} must be a list of strings")
    return tuple(value)


def _rule(action: str, item: object) -> Rule:
    if not isinstance(item, dict):
        raise InvalidRequest(f"an ACL rule of {action!r} must be a table/object")
    key = ACTIONS[action]
    known = {"principals", "allow"} | ({key} if key else set())
    extra = set(item) - known
    if extra:
        raise InvalidRequest(f"ACL rule of {action!r} has unknown keys {sorted(extra)}")
    allow = item.get("allow", True)
    if not isinstance(allow, bool):
        raise InvalidRequest(f"{action}.allow must be true or false")
    return Rule(_names(action, item, "principals"),
                _names(action, item, key) if key else None, allow)
