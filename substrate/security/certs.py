"""``offerpool certs init DIR``: a small certificate authority and the certificates it signs.

Creates, in ``DIR``: ``ca.pem``/``ca.key`` (the authority), ``server.pem``/``server.key``
(for masters and agents; valid for ``localhost``, ``127.0.0.1``, ``::1`` and every name or
address given) and ``client.pem``/``client.key`` (for schedulers, agents' master links and
other clients, for mutual TLS). Keys are ECDSA P-256 and written with mode 0600.

Examples
--------
>>> import tempfile
>>> paths = init_ca(tempfile.mkdtemp(), hosts=["master.example"])
>>> sorted(paths)
['ca', 'ca_key', 'client', 'client_key', 'server', 'server_key']
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Iterable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from substrate.errors import InvalidRequest

_DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "offerpool"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(path: str, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def init_ca(directory: str, hosts: Iterable[str] = (), *, days: int = 825,
            client_name: str = "offerpool-client", force: bool = False) -> dict[str, str]:
    """Create the CA, a server and a client certificate in ``directory``; return their paths.

    Parameters
    ----------
    directory : str
        Created if missing. Existing files are kept unless ``force``.
    hosts : iterable of str
        Extra DNS names or IP addresses the server certificate is valid for.
    days : int
        Validity of the certificates.
    """
    paths = {k: os.path.join(directory, f) for k, f in (
        ("ca", "ca.pem"), ("ca_key", "ca.key"), ("server", "server.pem"),
        ("server_key", "server.key"), ("client", "client.pem"), ("client_key", "client.key"))}
    if not force and any(os.path.exists(p) for p in paths.values()):
        raise InvalidRequest(f"{directory} already holds certificates (use --force to replace)")
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = _key()
    ca_name = _name("offerpool CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage, san: Optional[x509.SubjectAlternativeName]):
        key = _key()
        builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = leaf("offerpool server", ExtendedKeyUsageOID.SERVER_AUTH,
                              _san([*_DEFAULT_HOSTS, *hosts]))
    client_key, client = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH,
                              _san([client_name]))
    pem = serialization.Encoding.PEM
    _write(paths["ca"], ca.public_bytes(pem), False)
    _write(paths["ca_key"], _pem_key(ca_key), True)
    _write(paths["server"], server.public_bytes(pem), False)
    _write(paths["server_key"], _pem_key(server_key), True)
    _write(paths["client"], client.public_bytes(pem), False)
    _write(paths["client_key"], _pem_key(client_key), True)
    return paths
