"""The substrate's exception tree.

Every error a user of the public API can see derives from :class:`SubstrateError`;
raw ``grpc.RpcError`` never escapes the drivers. A failure that happened in another
process carries the remote type name, message and traceback text.
"""
from __future__ import annotations


class SubstrateError(Exception):
    """Base of every substrate error."""


class InvalidRequest(SubstrateError, ValueError):
    """A request was malformed or broke a rule (ids, resources, sizes, offers)."""


class ResourceError(InvalidRequest):
    """Resources were negative, not finite, or otherwise impossible."""


class ConnectionLost(SubstrateError):
    """The peer (master, agent) could not be reached or went away."""


class SubscriptionError(SubstrateError):
    """The master refused or ended a framework's subscription."""


class AuthenticationError(SubstrateError, PermissionError):
    """A principal's token was missing, wrong or expired, or TLS could not be set up."""


class AccessDenied(SubstrateError, PermissionError):
    """An authenticated principal asked for something the ACL policy does not allow."""


class PayloadRejected(SubstrateError, ValueError):
    """A sealed payload failed its integrity check (forged, truncated or another key)."""


class ClusterError(SubstrateError):
    """An embedded cluster could not be started or failed."""


class RemoteError(SubstrateError):
    """An exception raised in another process, carried across the wire.

    Parameters
    ----------
    type_name : str
        Qualified name of the remote exception type.
    message : str
        The remote exception's message.
    traceback : str
        The remote traceback, formatted.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        text = f"{self.type_name}: {self.message}"
        if self.traceback:
            text += "\n\nRemote traceback:\n" + self.traceback
        return text
