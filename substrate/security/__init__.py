"""Authentication, TLS, ACLs and payload integrity for the substrate.

* :mod:`~substrate.security.tokens`: principals, tokens and the hashed credentials file.
* :mod:`~substrate.security.client`: :class:`Credentials`, what every client sends.
* :mod:`~substrate.security.server`: :class:`ServerSecurity`, what masters and agents check.
* :mod:`~substrate.security.acl`: deny-by-default policies.
* :mod:`~substrate.security.certs`: a small CA (``offerpool certs init``).
* :mod:`~substrate.security.payload`: HMAC-sealed payloads for frameworks that pickle.
"""
from substrate.security.acl import Policy
from substrate.security.client import Credentials
from substrate.security.payload import PayloadKey
from substrate.security.server import ServerSecurity
from substrate.security.tokens import CredentialStore, Principal, add_principal

__all__ = ["CredentialStore", "Credentials", "PayloadKey", "Policy", "Principal",
           "ServerSecurity", "add_principal"]
