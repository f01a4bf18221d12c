"""mssante.pki (demo CA) and mssante.tls (contexts, peer inspection): SPEC R5-R10.

Real TLS handshakes over 127.0.0.1 with asyncio servers/clients; certificates from another CA come
from trustme (test dependency) or from a second DemoCA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
import ssl
import stat
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from mssante.pki import DemoCA, DistinguishedName, IssuedCert
from mssante.tls import (
    certificate_fingerprint_sha256,
    client_context,
    parse_min_version,
    peer_certificate,
    peer_subject_rfc4514,
    server_context,
)

SERVER_HOST = "mx.alpha.mssante.fr"
SERVER_DN = DistinguishedName(
    SERVER_HOST, "318310021300028", "GIP MIPIH", "Haute-Garonne (31)", "FR"
)
CLIENT_DN = DistinguishedName(
    "mx.beta.mssante.fr", "130007669", "Operateur Beta", "Paris (75)", "FR"
)
CLIENT_DN_STR = "CN=mx.beta.mssante.fr,OU=130007669,O=Operateur Beta,ST=Paris (75),C=FR"
TIMEOUT = 10


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Space:
    """A throwaway trust space on disk."""

    dir: Path
    ca: DemoCA
    ca_file: Path
    server: IssuedCert
    server_cert: Path
    server_key: Path
    client: IssuedCert
    client_cert: Path
    client_key: Path

    def write(self, issued: IssuedCert, name: str) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        issued.write(cert, key)
        return cert, key


@pytest.fixture
def space(tmp_path: Path) -> Space:
    ca = DemoCA.create()
    ca_file = tmp_path / "ca.crt"
    ca.write_cert(ca_file)
    server = ca.issue(SERVER_DN, ip_addresses=("127.0.0.1",), client=False)
    client = ca.issue(CLIENT_DN, server=False)
    server.write(tmp_path / "server.crt", tmp_path / "server.key")
    client.write(tmp_path / "client.crt", tmp_path / "client.key")
    return Space(
        tmp_path,
        ca,
        ca_file,
        server,
        tmp_path / "server.crt",
        tmp_path / "server.key",
        client,
        tmp_path / "client.crt",
        tmp_path / "client.key",
    )


@dataclass
class Running:
    port: int
    seen: list[str | None] = field(default_factory=list)  # peer DNs seen after a good handshake
    versions: list[str | None] = field(default_factory=list)


@asynccontextmanager
async def serve(ctx: ssl.SSLContext) -> AsyncIterator[Running]:
    """A TLS echo-the-peer-DN server on 127.0.0.1:<ephemeral>."""
    running = Running(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        dn = peer_subject_rfc4514(ssl_object)
        running.seen.append(dn)
        running.versions.append(ssl_object.version())
        writer.write(f"{dn}\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    running.port = server.sockets[0].getsockname()[1]
    try:
        yield running
    finally:
        server.close()
        await server.wait_closed()


async def talk(port: int, ctx: ssl.SSLContext, hostname: str | None = SERVER_HOST) -> str:
    """Handshake, read the line the server sends; raise if the server refused us."""

    async def go() -> str:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=hostname
        )
        try:
            line = await reader.readline()  # TLS 1.3: client-cert rejection surfaces here
            if not line:
                raise ConnectionError("server closed the connection")
            return line.decode().rstrip("\n")
        finally:
            writer.close()

    return await asyncio.wait_for(go(), TIMEOUT)


REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


def mtls_server(space: Space) -> ssl.SSLContext:
    return server_context(
        space.server_cert, space.server_key, client_ca_file=space.ca_file, request_client_cert=True
    )


def mtls_client(space: Space) -> ssl.SSLContext:
    return client_context(
        ca_file=space.ca_file, cert_file=space.client_cert, key_file=space.client_key
    )


# --------------------------------------------------------------------------- pki


def test_subject_dn_is_white_list_form(space: Space) -> None:
    assert CLIENT_DN.rfc4514() == CLIENT_DN_STR
    assert space.client.subject_dn == CLIENT_DN_STR
    assert space.server.subject_dn == (
        "CN=mx.alpha.mssante.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
    )
    assert DistinguishedName("x").rfc4514() == "CN=x,C=FR"


def test_ca_certificate_profile(space: Space) -> None:
    cert = space.ca.certificate
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.subject.rfc4514_string() == "CN=mssante demo CA,O=mssante demo,C=FR"
    now = _utcnow()
    assert cert.not_valid_before_utc <= now - dt.timedelta(minutes=59)
    assert cert.not_valid_after_utc >= now + dt.timedelta(days=3649)
    assert space.ca.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert space.ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_leaf_profile_san_eku(space: Space) -> None:
    leaf = space.ca.issue(
        SERVER_DN, dns_names=["smtp.alpha.mssante.fr"], ip_addresses=["127.0.0.1", "::1"]
    )
    cert = leaf.certificate
    cert.verify_directly_issued_by(space.ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [SERVER_HOST, "smtp.alpha.mssante.fr"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ca_ski = space.ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.value.digest
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert leaf.chain_pem == leaf.cert_pem + space.ca.cert_pem

    only_client = space.client.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(only_client.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # A CN that is not a host name is not put in the SAN; an IP CN becomes an IP SAN.
    person = space.ca.issue(DistinguishedName("Dr Jean Dupont"), client=True, server=False)
    with pytest.raises(x509.ExtensionNotFound):
        person.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ip_leaf = space.ca.issue(DistinguishedName("10.0.0.1"))
    ip_san = ip_leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(a) for a in ip_san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    with pytest.raises(ValueError):
        space.ca.issue(CLIENT_DN, server=False, client=False)


def test_validity_window(space: Space) -> None:
    now = _utcnow().replace(microsecond=0)
    expired = space.ca.issue(CLIENT_DN, not_after=now - dt.timedelta(days=1))
    assert expired.certificate.not_valid_after_utc == now - dt.timedelta(days=1)
    assert expired.certificate.not_valid_before_utc < expired.certificate.not_valid_after_utc
    future = space.ca.issue(CLIENT_DN, not_before=now + dt.timedelta(days=1))
    assert future.certificate.not_valid_before_utc == now + dt.timedelta(days=1)
    with pytest.raises(ValueError):
        space.ca.issue(CLIENT_DN, not_before=now, not_after=now - dt.timedelta(days=1))


def test_save_load_roundtrip(space: Space, tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "demo" / "ca.crt", tmp_path / "demo" / "ca.key"
    space.ca.save(cert_path, key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(space.client_key.stat().st_mode) == 0o600
    again = DemoCA.load(cert_path, key_path)
    assert again.cert_pem == space.ca.cert_pem
    again.issue(CLIENT_DN).certificate.verify_directly_issued_by(space.ca.certificate)
    other = DemoCA.create()
    other.save(tmp_path / "o.crt", tmp_path / "o.key")
    with pytest.raises(ValueError, match="does not match"):
        DemoCA.load(cert_path, tmp_path / "o.key")


def test_write_with_chain(space: Space) -> None:
    cert_path, _ = space.dir / "full.crt", space.dir / "full.key"
    space.server.write(cert_path, space.dir / "full.key", chain=True)
    certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert [c.subject for c in certs] == [
        space.server.certificate.subject,
        space.ca.certificate.subject,
    ]


# --------------------------------------------------------------------------- tls: contexts


def test_context_settings(space: Space) -> None:
    srv = mtls_server(space)
    assert srv.minimum_version == ssl.TLSVersion.TLSv1_2
    assert srv.verify_mode == ssl.CERT_OPTIONAL and srv.check_hostname is False
    assert srv.options & ssl.OP_NO_COMPRESSION
    assert srv.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    for cipher in srv.get_ciphers():
        if cipher["protocol"] == "TLSv1.2":
            assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]
    plain = server_context(space.server_cert, space.server_key)
    assert plain.verify_mode == ssl.CERT_NONE
    strict = server_context(space.server_cert, space.server_key, min_version="1.3")
    assert strict.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError):
        server_context(space.server_cert, space.server_key, request_client_cert=True)

    cli = mtls_client(space)
    assert cli.verify_mode == ssl.CERT_REQUIRED and cli.check_hostname is True
    assert cli.minimum_version == ssl.TLSVersion.TLSv1_2
    # R10: the only trust anchor is ca_file (no system store).
    assert cli.cert_store_stats()["x509_ca"] == 1
    with pytest.raises(ValueError):
        client_context(ca_file=space.ca_file, key_file=space.client_key)


@pytest.mark.parametrize("bad", ["1.0", "1.1", "1", "ssl3", ""])
def test_min_version_below_12_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_min_version(bad)


def test_min_version_parsing() -> None:
    assert parse_min_version("1.3") is ssl.TLSVersion.TLSv1_3
    assert parse_min_version("TLSv1.2") is ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError):
        parse_min_version(ssl.TLSVersion.TLSv1_1)


def test_fingerprint(space: Space) -> None:
    cert = space.client.certificate
    fp = certificate_fingerprint_sha256(cert)
    assert fp == cert.fingerprint(hashes.SHA256()).hex()
    der = cert.public_bytes(serialization.Encoding.DER)
    assert fp == hashlib.sha256(der).hexdigest() and len(fp) == 64 and fp == fp.lower()
    assert peer_certificate(None) is None and peer_subject_rfc4514(None) is None


# --------------------------------------------------------------------------- tls: handshakes


async def test_mtls_handshake_server_sees_client_dn(space: Space) -> None:
    async with serve(mtls_server(space)) as srv:
        line = await talk(srv.port, mtls_client(space))
    assert line == CLIENT_DN_STR
    assert srv.seen == [CLIENT_DN_STR]
    assert srv.versions[0] in ("TLSv1.2", "TLSv1.3")


async def test_client_sees_server_certificate(space: Space) -> None:
    async with serve(mtls_server(space)) as srv:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", srv.port, ssl=mtls_client(space), server_hostname=SERVER_HOST
        )
        ssl_object = writer.get_extra_info("ssl_object")
        cert = peer_certificate(ssl_object)
        assert cert is not None
        assert certificate_fingerprint_sha256(cert) == certificate_fingerprint_sha256(
            space.server.certificate
        )
        assert peer_subject_rfc4514(ssl_object) == space.server.subject_dn
        await reader.readline()
        writer.close()


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_mtls_over_each_allowed_version(space: Space, max_version: ssl.TLSVersion) -> None:
    ctx = mtls_client(space)
    ctx.maximum_version = max_version
    async with serve(mtls_server(space)) as srv:
        assert await talk(srv.port, ctx) == CLIENT_DN_STR
    assert srv.versions == [{"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[max_version.name]]


async def test_no_client_certificate_is_optional(space: Space) -> None:
    """CERT_OPTIONAL: the handshake completes; the SMTP layer decides (R5)."""
    async with serve(mtls_server(space)) as srv:
        assert await talk(srv.port, client_context(ca_file=space.ca_file)) == "None"
    assert srv.seen == [None]


async def test_client_cert_from_trustme_ca_refused(space: Space) -> None:
    other = trustme.CA()
    leaf = other.issue_cert(
        "mx.beta.mssante.fr",
        common_name="mx.beta.mssante.fr",
        organization_name="Operateur Beta",
        organization_unit_name="130007669",
    )
    chain, key = space.dir / "tm-client.pem", space.dir / "tm-client.key"
    leaf.cert_chain_pems[0].write_to_path(str(chain))
    leaf.private_key_pem.write_to_path(str(key))
    ctx = client_context(ca_file=space.ca_file, cert_file=chain, key_file=key)
    async with serve(mtls_server(space)) as srv:
        with pytest.raises(REFUSED):
            await talk(srv.port, ctx)
    assert srv.seen == []


async def test_client_cert_same_dn_other_demo_ca_refused(space: Space) -> None:
    """Same subject DN as the legitimate client, but the chain is wrong (R5, R10)."""
    impostor = DemoCA.create("impostor CA").issue(CLIENT_DN, server=False)
    assert impostor.subject_dn == CLIENT_DN_STR
    cert, key = space.write(impostor, "impostor")
    ctx = client_context(ca_file=space.ca_file, cert_file=cert, key_file=key)
    async with serve(mtls_server(space)) as srv:
        with pytest.raises(REFUSED):
            await talk(srv.port, ctx)
    assert srv.seen == []


async def test_expired_client_cert_refused(space: Space) -> None:
    now = _utcnow()
    expired = space.ca.issue(
        CLIENT_DN, server=False, not_before=now - dt.timedelta(days=30), not_after=now
    )
    cert, key = space.write(expired, "expired-client")
    ctx = client_context(ca_file=space.ca_file, cert_file=cert, key_file=key)
    async with serve(mtls_server(space)) as srv:
        with pytest.raises(REFUSED):
            await talk(srv.port, ctx)
    assert srv.seen == []


async def test_server_from_other_ca_refused_even_if_in_system_store(
    space: Space, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = trustme.CA()
    other_ca = space.dir / "system-ca.pem"
    other.cert_pem.write_to_path(str(other_ca))
    leaf = other.issue_cert(SERVER_HOST, "127.0.0.1")
    srv_cert, srv_key = space.dir / "tm-server.pem", space.dir / "tm-server.key"
    leaf.cert_chain_pems[0].write_to_path(str(srv_cert))
    leaf.private_key_pem.write_to_path(str(srv_key))
    # Make the foreign CA part of the "system store" that OpenSSL's default paths would load.
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(space.dir / "empty"))
    async with serve(server_context(srv_cert, srv_key)) as srv:
        # Control: a context using the system store does trust that server.
        assert await talk(srv.port, ssl.create_default_context()) == "None"
        with pytest.raises(ssl.SSLCertVerificationError):
            await talk(srv.port, mtls_client(space))


async def test_expired_server_cert_refused_by_client(space: Space) -> None:
    now = _utcnow()
    expired = space.ca.issue(
        SERVER_DN,
        ip_addresses=["127.0.0.1"],
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    cert, key = space.write(expired, "expired-server")
    async with serve(server_context(cert, key)) as srv:
        with pytest.raises(ssl.SSLCertVerificationError) as err:
            await talk(srv.port, mtls_client(space))
    assert "expired" in str(err.value)


async def test_not_yet_valid_server_cert_refused_by_client(space: Space) -> None:
    future = space.ca.issue(SERVER_DN, not_before=_utcnow() + dt.timedelta(days=1))
    cert, key = space.write(future, "future-server")
    async with serve(server_context(cert, key)) as srv:
        with pytest.raises(ssl.SSLCertVerificationError) as err:
            await talk(srv.port, mtls_client(space))
    assert "not yet valid" in str(err.value)


async def test_hostname_checked_unless_disabled(space: Space) -> None:
    async with serve(mtls_server(space)) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            await talk(srv.port, mtls_client(space), hostname="mx.gamma.mssante.fr")
        relaxed = client_context(
            ca_file=space.ca_file,
            cert_file=space.client_cert,
            key_file=space.client_key,
            check_hostname=False,
        )
        assert await talk(srv.port, relaxed, hostname="mx.gamma.mssante.fr") == CLIENT_DN_STR


async def test_rsa_trust_space(tmp_path: Path) -> None:
    ca = DemoCA.create(key_type="rsa")
    ca.write_cert(tmp_path / "ca.crt")
    ca.issue(SERVER_DN, key_type="rsa").write(tmp_path / "s.crt", tmp_path / "s.key")
    ca.issue(CLIENT_DN, key_type="rsa").write(tmp_path / "c.crt", tmp_path / "c.key")
    srv_ctx = server_context(
        tmp_path / "s.crt", tmp_path / "s.key", client_ca_file=tmp_path / "ca.crt"
    )
    cli_ctx = client_context(
        ca_file=tmp_path / "ca.crt", cert_file=tmp_path / "c.crt", key_file=tmp_path / "c.key"
    )
    async with serve(srv_ctx) as srv:
        assert await talk(srv.port, cli_ctx) == CLIENT_DN_STR


async def test_tls13_minimum_refuses_tls12_client(space: Space) -> None:
    ctx = mtls_client(space)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    strict = server_context(
        space.server_cert, space.server_key, client_ca_file=space.ca_file, min_version="1.3"
    )
    async with serve(strict) as srv:
        with pytest.raises(REFUSED):
            await talk(srv.port, ctx)


# --------------------------------------------------------------------------- R7: TLS 1.1 probes


def _legacy_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client limited to an old protocol version (SECLEVEL=0 so OpenSSL 3 will try it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = version
    return ctx


def _permissive_server(space: Space) -> ssl.SSLContext:
    """A deliberately weak server, used only to prove the local stack can speak TLS 1.1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.load_cert_chain(space.server_cert, space.server_key)
    return ctx


@pytest.mark.parametrize("old", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
async def test_tls_below_12_refused(space: Space, old: ssl.TLSVersion) -> None:
    legacy = _legacy_client(old)
    async with serve(_permissive_server(space)) as control:
        try:
            await talk(control.port, legacy, hostname=None)
        except (*REFUSED, TimeoutError) as exc:
            pytest.skip(f"local OpenSSL cannot negotiate {old.name} at all ({exc!r})")
    assert control.versions == [{"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}[old.name]]
    async with serve(mtls_server(space)) as srv:
        with pytest.raises(REFUSED):
            await talk(srv.port, legacy, hostname=None)
    assert srv.seen == []


async def _s_client(openssl: str, port: int, *flags: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        openssl,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        SERVER_HOST,
        *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _negotiated(s_client_output: str, protocol: str) -> bool:
    """s_client prints ``Protocol : TLSv1.1`` even on failure; a failure has no cipher."""
    return (
        f"Protocol  : {protocol}" in s_client_output and "Cipher is (NONE)" not in s_client_output
    )


async def test_openssl_s_client_tls11_probe_refused(space: Space) -> None:
    """SPEC R7's own test: ``openssl s_client -tls1_1`` against a listener is refused."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not on PATH")
    tls11 = ("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    async with serve(_permissive_server(space)) as control:
        rc, out = await _s_client(openssl, control.port, *tls11)
    if rc != 0 or not _negotiated(out, "TLSv1.1"):
        pytest.skip(f"openssl s_client cannot negotiate TLS 1.1 here (rc={rc})")
    async with serve(mtls_server(space)) as srv:
        rc, out = await _s_client(openssl, srv.port, *tls11)
        assert rc != 0, out
        assert not _negotiated(out, "TLSv1.1"), out
        rc12, out12 = await _s_client(openssl, srv.port, "-tls1_2")
        assert rc12 == 0, out12
        assert _negotiated(out12, "TLSv1.2"), out12
