"""TLS contexts for every listener and for the outbound relay, and peer-certificate inspection.

Requirements (see SPEC.md):

* R5 - inbound operator-to-operator SMTP asks for a client certificate; it must chain to the
  configured IGC-Santé anchors, and the SMTP layer then compares its subject DN (RFC 4514 form, see
  :func:`peer_subject_rfc4514`) with the white list's ``DNCertificatOperateur``.
* R6 - outbound relay (STARTTLS, RFC 3207) presents our certificate and verifies the peer.
* R7 - TLS 1.2 is the floor on every listener: SSLv3, TLS 1.0 and TLS 1.1 are refused
  (RFC 8996 deprecates TLS 1.0/1.1; ANS SC.MSS/CONF.01).
* R8 - validity periods are checked by OpenSSL during the handshake (expired -> failure).
  Revocation (CRL/OCSP) is NOT checked by these contexts yet.
* R9 - the CRL cache is out of scope here; these contexts only take trust anchors.
* R10 - peers are verified against ONLY the given IGC-Santé anchors, never the system store.
"""

from __future__ import annotations

import hashlib
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "TLS12_CIPHERS",
    "certificate_fingerprint_sha256",
    "client_context",
    "parse_min_version",
    "peer_certificate",
    "peer_subject_rfc4514",
    "server_context",
]

StrPath = str | os.PathLike[str]

#: TLS 1.2 suites: forward-secret ECDHE key exchange with AEAD ciphers only (no CBC, no RSA kx).
#: TLS 1.3 suites are all AEAD and are left to OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"

_VERSIONS = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def parse_min_version(min_version: str | ssl.TLSVersion) -> ssl.TLSVersion:
    """Map ``"1.2"``/``"1.3"`` to a :class:`ssl.TLSVersion`; anything older is refused (R7)."""
    if isinstance(min_version, ssl.TLSVersion):
        if min_version in _VERSIONS.values():
            return min_version
        raise ValueError(f"TLS minimum below 1.2 is not allowed (R7): {min_version!r}")
    try:
        return _VERSIONS[min_version.strip().removeprefix("TLSv").removeprefix("tls")]
    except KeyError:
        raise ValueError(
            f"unsupported TLS minimum version {min_version!r}: use '1.2' or '1.3' (R7)"
        ) from None


def _harden(ctx: ssl.SSLContext, min_version: str | ssl.TLSVersion) -> None:
    """Settings shared by server and client contexts."""
    ctx.minimum_version = parse_min_version(min_version)  # R7, RFC 8996
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(TLS12_CIPHERS)


def server_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    client_ca_file: StrPath | None = None,
    request_client_cert: bool = False,
    min_version: str | ssl.TLSVersion = "1.2",
) -> ssl.SSLContext:
    """A TLS server context for SMTP (25/587, STARTTLS per RFC 3207), IMAP and HTTPS listeners.

    When ``request_client_cert`` is true (or ``client_ca_file`` is given) the server asks for a
    client certificate with ``CERT_OPTIONAL``: a client presenting none still completes the
    handshake (the SMTP layer decides, R5), but a presented certificate that does not chain to
    ``client_ca_file`` - and only to it (R10) - or is expired (R8) fails the handshake.
    """
    if request_client_cert and client_ca_file is None:
        raise ValueError("request_client_cert needs client_ca_file (the trust anchors, R10)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, min_version)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    ctx.check_hostname = False
    ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    if client_ca_file is not None:
        # PROTOCOL_TLS_SERVER loads no default CAs: the anchors are exactly this file (R10).
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(
    *,
    ca_file: StrPath,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    min_version: str | ssl.TLSVersion = "1.2",
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A TLS client context for the outbound relay (R6).

    The peer chain is always verified (``CERT_REQUIRED``) against ``ca_file`` only - the system
    store is never loaded (R10). ``check_hostname=False`` disables only the name match (useful
    when relaying to an MX whose name is checked elsewhere); the chain is still verified.
    """
    if key_file is not None and cert_file is None:
        raise ValueError("key_file given without cert_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, no default CAs loaded
    _harden(ctx, min_version)
    ctx.load_verify_locations(cafile=ca_file)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file is not None:
        ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return ctx


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The certificate the peer presented, or ``None`` (no TLS or no certificate presented)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der)


def peer_subject_rfc4514(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The peer subject DN as ``CN=…,OU=…,O=…,ST=…,C=FR`` (white-list form, R5), or ``None``."""
    cert = peer_certificate(ssl_object)
    return None if cert is None else cert.subject.rfc4514_string()


def certificate_fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate: lower-case hex, no colons."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
