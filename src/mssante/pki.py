"""A small certificate authority for demos and tests.

`mssante demo` and the test-suite use it to stand up a throwaway MSSanté-like trust space: one root
CA standing in for the IGC-Santé roots (SPEC R10) that issues operator certificates whose subject
DN is printed like the ANS white list's ``DNCertificatOperateur`` (SPEC R5)::

    CN=mx.example.mssante.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR

Built on ``cryptography`` only (``trustme`` is a test dependency). Not for production trust.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DemoCA", "DistinguishedName", "IssuedCert", "KeyType"]

KeyType = Literal["ec", "rsa"]
StrPath = str | os.PathLike[str]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_HOSTNAME_RE = re.compile(
    r"^(\*\.)?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)
_DEFAULT_LEAF_LIFETIME = dt.timedelta(days=365)
_CA_LIFETIME = dt.timedelta(days=3650)
_BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class DistinguishedName:
    """A certificate subject, printed ``CN=…,OU=…,O=…,ST=…,C=…`` as in the white list (R5)."""

    common_name: str
    organizational_unit: str | None = None
    organization: str | None = None
    state: str | None = None
    country: str | None = "FR"

    def x509_name(self) -> x509.Name:
        """Build the name in encoding order C, ST, O, OU, CN (RFC 4514 prints it reversed)."""
        parts = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        ]
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])

    def rfc4514(self) -> str:
        """The RFC 4514 string, e.g. ``CN=mx.a.mssante.fr,OU=1,O=Op,ST=Paris (75),C=FR``."""
        return self.x509_name().rfc4514_string()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported key type: {key_type!r}")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, ca: bool, encipher: bool = False) -> x509.KeyUsage:
    """CA: keyCertSign + cRLSign; leaf: digitalSignature (+ keyEncipherment for RSA)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipher and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: StrPath, data: bytes, *, private: bool = False) -> None:
    """Write ``data``; private keys are created with mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        target.chmod(0o600)
    else:
        target.write_bytes(data)


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate with its private key and the chain up to the demo root."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    ca_certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        """PKCS#8, unencrypted."""
        return _key_pem(self.private_key)

    @property
    def chain_pem(self) -> bytes:
        """Leaf then CA certificate."""
        return self.cert_pem + _cert_pem(self.ca_certificate)

    @property
    def subject_dn(self) -> str:
        """The subject in RFC 4514 form, as compared against ``DNCertificatOperateur``."""
        return self.certificate.subject.rfc4514_string()

    def write(self, cert_path: StrPath, key_path: StrPath, *, chain: bool = False) -> None:
        """Write the certificate (with the CA appended if ``chain``) and the key (mode 0600)."""
        _write(cert_path, self.chain_pem if chain else self.cert_pem)
        _write(key_path, self.key_pem, private=True)


class DemoCA:
    """A self-signed root CA that issues server/client leaf certificates."""

    def __init__(self, certificate: x509.Certificate, private_key: PrivateKey) -> None:
        if certificate.public_key() != private_key.public_key():
            raise ValueError("CA private key does not match the CA certificate")
        self.certificate = certificate
        self.private_key = private_key

    @classmethod
    def create(
        cls,
        common_name: str = "mssante demo CA",
        *,
        organization: str = "mssante demo",
        key_type: KeyType = "ec",
    ) -> DemoCA:
        """A new root valid from now-1h for 10 years (EC P-256 by default, RSA 2048 optional)."""
        key = _new_key(key_type)
        name = DistinguishedName(common_name, organization=organization).x509_name()
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: StrPath, key_path: StrPath) -> DemoCA:
        """Reload a CA written by :meth:`save`."""
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported CA key type: {type(key).__name__}")
        return cls(cert, key)

    def save(self, cert_path: StrPath, key_path: StrPath) -> None:
        """Write the CA certificate and its key (mode 0600)."""
        self.write_cert(cert_path)
        _write(key_path, self.key_pem, private=True)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.private_key)

    def write_cert(self, path: StrPath) -> None:
        """Write the CA certificate, e.g. as a trust-anchor file for the TLS contexts."""
        _write(path, self.cert_pem)

    def issue(
        self,
        subject: DistinguishedName,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        server: bool = True,
        client: bool = True,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_type: KeyType = "ec",
    ) -> IssuedCert:
        """Issue a leaf certificate for ``subject``.

        The CN is added as a DNS SAN when it looks like a host name (or as an IP SAN when it is an
        address). Defaults: valid from now-1h for one year. Pass ``not_after`` in the past (or
        ``not_before`` in the future) for expired / not-yet-valid certificates.
        """
        if not (server or client):
            raise ValueError("a leaf certificate needs server and/or client usage")
        now = _now()
        start = not_before if not_before is not None else now - _BACKDATE
        end = not_after if not_after is not None else start + _DEFAULT_LEAF_LIFETIME
        if not_before is None and end <= start:
            start = end - dt.timedelta(days=1)
        if end <= start:
            raise ValueError("not_after must be later than not_before")

        dns = list(dict.fromkeys(dns_names))
        ips = [ipaddress.ip_address(a) for a in dict.fromkeys(ip_addresses)]
        try:
            cn_ip = ipaddress.ip_address(subject.common_name)
        except ValueError:
            if _HOSTNAME_RE.match(subject.common_name) and subject.common_name not in dns:
                dns.insert(0, subject.common_name)
        else:
            if cn_ip not in ips:
                ips.insert(0, cn_ip)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ip) for ip in ips]

        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        key = _new_key(key_type)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject.x509_name())
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False, encipher=key_type == "rsa"), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.private_key, hashes.SHA256())
        return IssuedCert(cert, key, self.certificate)
