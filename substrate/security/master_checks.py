"""The master's authorization decisions, kept out of its gRPC service.

Each function takes the master's :class:`~substrate.security.server.ServerSecurity`, the
caller's principal (None when authentication is off: then only the ownership rules that need
no identity apply) and raises :class:`~substrate.errors.AccessDenied` with a reason.
"""
from __future__ import annotations

from typing import Optional

from substrate.errors import AccessDenied
from substrate.security.acl import DEFAULT_TASK_USER
from substrate.security.server import ServerSecurity
from substrate.security.tokens import Principal


def check_subscribe(security: ServerSecurity, frameworks: dict,
                    principal: Optional[Principal], info) -> None:
    """May ``principal`` subscribe with ``info`` (a ``pb.FrameworkInfo``, updated in place)?

    The framework's principal becomes the authenticated one; a framework id owned by another
    principal cannot be taken over; the role and the OS user must be allowed by the policy.
    """
    if principal is None:
        return
    if info.principal and info.principal != principal.name:
        raise AccessDenied(f"principal {principal.name!r} cannot subscribe as "
                           f"{info.principal!r}")
    info.principal = principal.name
    existing = frameworks.get(info.id) if info.id else None
    if existing is not None and existing.info.principal != principal.name:
        raise AccessDenied(f"framework {info.id} belongs to another principal")
    security.authorize(principal, "register_frameworks", info.role or "*")
    security.authorize(principal, "run_tasks", info.user or DEFAULT_TASK_USER)


def check_teardown(security: ServerSecurity, principal: Optional[Principal], record) -> None:
    """May ``principal`` tear down the framework of ``record`` (a FrameworkRecord)?"""
    if principal is None:
        return
    owner = record.info.principal
    if owner == principal.name and principal.kind == "framework":
        return  # a framework may always end itself
    security.authorize(principal, "teardown_frameworks", owner or "*")
