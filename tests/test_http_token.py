"""The HTTP API's OAuth2 client credentials (R18), driven with curl and httpx.

A real `Services` is built from a `LocalTrustSpace` operator configuration (SQLite, or
PostgreSQL with MSSANTE_TEST_DB=postgresql); the app runs with `start_http` on 127.0.0.1,
port 0. Nothing the tests send as a secret or receive as a token may appear in a log record
or a trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from conftest import ALPHA
from mssante.domain.mailboxes import MailboxSpec, MailboxType
from mssante.http import create_app, start_http, stop_http
from mssante.http.server import HttpServer
from mssante.identity import TokenValidator, token_hash
from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key
from mssante.runtime import Services
from mssante.services.machine_credentials import MachineCredentialService
from mssante.services.token_signer import TokenSigner
from mssante.storage.schema import trace_events
from mssante.testing.clients import seed_professional_mailbox, seed_structure_mailbox
from mssante.testing.trust_space import LocalTrustSpace

APP = "dui.ehpad@alpha.mssante.fr"
PER = "camille.martin@alpha.mssante.fr"
ORG = "secretariat@alpha.mssante.fr"
FINESS = "1750000010"
RPPS = "10000005479"  # idNat_PS 810000005479, Camille of the demo provider
PASSWORD = "Sesame-ouvre-toi 42!"


def _machine_credentials(services: Services) -> MachineCredentialService:
    existing = getattr(services, "machine_credentials", None)
    if isinstance(existing, MachineCredentialService):
        return existing
    signer = TokenSigner.load_or_create(services.config.data_dir / "oauth-signing-key.pem")
    service = MachineCredentialService(
        services.db,
        services.mailboxes,
        token_signer=signer,
        issuer=f"https://{services.config.operator.hostname}",
    )
    services.machine_credentials = service  # type: ignore[attr-defined]
    return service


@dataclass
class Api:
    services: Services
    credentials: MachineCredentialService
    url: str
    client_id: str
    secret: str = field(repr=False)
    secrets: list[str] = field(default_factory=list, repr=False)  # every secret and token seen

    def remember(self, *values: str) -> None:
        self.secrets.extend(v for v in values if v)


@pytest.fixture
def space(tmp_path: Path, database_url: Callable[[], str]) -> LocalTrustSpace:
    return LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])


@pytest.fixture
def services(space: LocalTrustSpace) -> Iterator[Services]:
    services = Services(space.operators[0].config)
    services.migrate()
    seed_structure_mailbox(
        services.mailboxes, APP, FINESS, "EHPAD Les Tilleuls", PASSWORD, type=MailboxType.APP
    )
    services.mailboxes.create_mailbox(
        MailboxSpec(ORG, MailboxType.ORG, id_nat_struct=FINESS, responsible="Directrice")
    )
    seed_professional_mailbox(services.mailboxes, PER, RPPS, PASSWORD)
    services.mailboxes.add_member(ORG, PER)
    _machine_credentials(services)
    yield services
    services.close()


@pytest.fixture
async def api(services: Services, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Api]:
    caplog.set_level(logging.DEBUG)
    credentials = _machine_credentials(services)
    client_id, secret = credentials.create_client(APP, actor="test")
    server, port = await start_http(create_app(services), "127.0.0.1", 0)
    api = Api(services, credentials, f"http://127.0.0.1:{port}", client_id, secret)
    api.remember(secret)
    try:
        yield api
    finally:
        await stop_http(server)
        _assert_nothing_leaked(api, caplog)


def _assert_nothing_leaked(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    # At teardown caplog.records holds only the teardown phase: read every phase.
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]
    records += caplog.records
    logged = caplog.text + "\n".join(r.getMessage() for r in records)
    with api.services.db.read() as conn:
        rows = conn.execute(select(trace_events)).all()
    traced = "\n".join(" ".join(str(v) for v in row) for row in rows)
    for value in api.secrets:
        assert value not in logged, "a secret or a token was logged"
        assert value not in traced, "a secret or a token was traced"
        if value.count(".") == 2:  # a JWT: not even its signature
            assert value.split(".")[2] not in logged + traced


async def curl(*args: str) -> tuple[int, dict[str, str], str]:
    """Run curl; returns (status, lower-cased headers, body)."""
    proc = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "--max-time", "20", "-D", "-", *args],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.decode("utf-8").partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _problem(status: int, headers: dict[str, str], body: str, expected: int) -> dict[str, Any]:
    assert status == expected
    assert headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = json.loads(body)
    assert document["status"] == expected
    # Generic HTTP errors are about:blank; the API's own have stable type URIs (RFC 9457 §3.1.1).
    kind = document["type"]
    assert kind == "about:blank" or kind.startswith("https://mssante.fr/problems/"), kind
    assert document["title"] and document["detail"]
    return document


# -- the token endpoint ---------------------------------------------------------------------


async def test_curl_client_credentials_then_me(api: Api) -> None:
    status, headers, body = await curl(
        "-u", f"{api.client_id}:{api.secret}", "-d", "grant_type=client_credentials",
        f"{api.url}/oauth/token",
    )  # fmt: skip
    assert status == 200, body
    assert headers["cache-control"] == "no-store" and headers["pragma"] == "no-cache"
    answer = json.loads(body)
    token = answer["access_token"]
    api.remember(token)
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 300
    assert answer["scope"] == "api"

    status, headers, body = await curl("--oauth2-bearer", token, f"{api.url}/api/v1/me")
    assert status == 200, body
    assert json.loads(body) == {"login": APP, "kind": "application", "mailboxes": [APP]}
    assert "server" not in headers  # no product banner

    # The token verifies with the published JWKS alone.
    status, _, body = await curl(f"{api.url}/.well-known/jwks.json")
    [key] = json.loads(body)["keys"]
    assert status == 200 and "d" not in key
    claims = jwt.decode(token, ECKey.import_key(key), algorithms=["ES256"]).claims
    assert claims["sub"] == APP and claims["aud"] == "mssante-api"
    assert claims["iss"] == "https://mx.alpha.mssante.fr"

    with api.services.db.read() as conn:
        rows = conn.execute(
            select(trace_events).where(trace_events.c.action == "oauth.token")
        ).all()
    [row] = rows
    assert row.outcome == "ok" and row.actor == api.client_id and row.peer == "127.0.0.1"


async def test_client_secret_post_with_httpx(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": api.client_id,
                "client_secret": api.secret,
                "scope": "api",
            },
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        api.remember(token)
        me = await client.get("/api/v1/me", headers={"Authorization": f"bearer {token}"})
        assert me.status_code == 200 and me.json()["login"] == APP


async def test_token_endpoint_errors(api: Api) -> None:
    # Wrong secret (curl, client_secret_basic): 401 invalid_client with a Basic challenge.
    wrong = api.secret[:-2] + "xy"
    api.remember(wrong)
    status, headers, body = await curl(
        "-u", f"{api.client_id}:{wrong}", "-d", "grant_type=client_credentials",
        f"{api.url}/oauth/token",
    )  # fmt: skip
    assert status == 401
    assert json.loads(body)["error"] == "invalid_client"
    assert headers["www-authenticate"].startswith("Basic realm=")
    assert headers["cache-control"] == "no-store"

    async with httpx.AsyncClient(base_url=api.url) as client:

        async def token(
            data: dict[str, str] | str, auth: tuple[str, str] | None = None, **kw: Any
        ) -> httpx.Response:
            if isinstance(data, str):
                return await client.post("/oauth/token", content=data, auth=auth, **kw)
            return await client.post("/oauth/token", data=data, auth=auth, **kw)

        good = (api.client_id, api.secret)
        cases: list[tuple[httpx.Response, int, str]] = [
            (await token({"grant_type": "password"}, good), 400, "unsupported_grant_type"),
            (await token({"scope": "api"}, good), 400, "invalid_request"),
            (await token({"grant_type": "client_credentials"}), 401, "invalid_client"),
            (
                await token({"grant_type": "client_credentials", "client_id": api.client_id}),
                401,
                "invalid_client",
            ),
            (
                await token(  # two authentication methods at once
                    {"grant_type": "client_credentials", "client_secret": api.secret}, good
                ),
                400,
                "invalid_request",
            ),
            (
                await token(  # a repeated parameter (RFC 6749 §3.2)
                    "grant_type=client_credentials&grant_type=client_credentials",
                    good,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                ),
                400,
                "invalid_request",
            ),
            (
                await client.post(
                    "/oauth/token", json={"grant_type": "client_credentials"}, auth=good
                ),
                400,
                "invalid_request",
            ),
            (
                await token({"grant_type": "client_credentials", "scope": "admin"}, good),
                400,
                "invalid_scope",
            ),
            (
                await token(
                    {"grant_type": "client_credentials"},
                    headers={"Authorization": "Basic !!!not-base64"},
                ),
                401,
                "invalid_client",
            ),
            (
                await token(
                    {"grant_type": "client_credentials"},
                    headers={"Authorization": f"Bearer {api.secret}"},
                ),
                401,
                "invalid_client",
            ),
            (
                await token(
                    "grant_type=client_credentials&pad=" + "a" * 20000,
                    good,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                ),
                400,
                "invalid_request",
            ),
        ]
        for response, status, error in cases:
            assert response.status_code == status, (error, response.text)
            body = response.json()
            assert body["error"] == error and body["error_description"].isascii()
            assert response.headers["cache-control"] == "no-store"
            assert ("www-authenticate" in response.headers) == (status == 401)
        get = await client.get("/oauth/token")
        _problem(get.status_code, dict(get.headers), get.text, 405)

    # Refusals are traced, never with the secret.
    with api.services.db.read() as conn:
        refused = conn.execute(
            select(trace_events).where(
                trace_events.c.action == "oauth.token", trace_events.c.outcome == "refused"
            )
        ).all()
    assert len(refused) >= 2


# -- the bearer-protected API ---------------------------------------------------------------


async def test_me_refuses_missing_expired_forged_and_revoked_tokens(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    issued = await asyncio.to_thread(api.credentials.issue_token, api.client_id, api.secret)
    token = issued.access_token
    api.remember(token)
    me = f"{api.url}/api/v1/me"

    status, headers, body = await curl(me)
    _problem(status, headers, body, 401)
    assert headers["www-authenticate"] == 'Bearer realm="mssante"'

    signer = api.credentials.signer
    header = {"alg": "ES256", "typ": "at+jwt", "kid": signer.kid}
    claims = jwt.decode(token, ECKey.import_key(signer.jwks()["keys"][0])).claims
    expired = signer.sign({**claims, "iat": claims["iat"] - 900, "exp": claims["iat"] - 600})
    forged_key = jwt.encode(header, claims, ECKey.generate_key("P-256"), algorithms=["ES256"])
    other_signer = TokenSigner.generate().sign(claims)
    h, p, s = token.split(".")
    tampered = f"{h}.{p[:-4]}{'AAAA' if p[-4:] != 'AAAA' else 'BBBB'}.{s}"
    api.remember(expired, forged_key, other_signer, tampered)
    for bad in (expired, forged_key, other_signer, tampered, "garbage"):
        status, headers, body = await curl("--oauth2-bearer", bad, me)
        document = _problem(status, headers, body, 401)
        assert 'error="invalid_token"' in headers["www-authenticate"]
        assert headers["www-authenticate"].startswith("Bearer ")
        assert "jeton" in document["detail"]  # French
        assert headers["cache-control"] == "no-store"

    # The refusals are logged by token hash (R17), never with the token.
    hashes = {token_hash(t) for t in (expired, forged_key, other_signer, tampered)}
    assert hashes <= {h for h in hashes if h in caplog.text}

    status, _, _ = await curl("--oauth2-bearer", token, me)
    assert status == 200
    await asyncio.to_thread(api.credentials.revoke, api.client_id)
    status, headers, body = await curl("--oauth2-bearer", token, me)
    _problem(status, headers, body, 401)
    status, _, body = await curl(
        "-u", f"{api.client_id}:{api.secret}", "-d", "grant_type=client_credentials",
        f"{api.url}/oauth/token",
    )  # fmt: skip
    assert status == 401 and json.loads(body)["error"] == "invalid_client"


async def test_unknown_routes_and_internal_errors_are_problems(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    status, headers, body = await curl(f"{api.url}/api/v1/nothing-here")
    assert _problem(status, headers, body, 404)["title"] == "Ressource introuvable"

    token = (
        await asyncio.to_thread(api.credentials.issue_token, api.client_id, api.secret)
    ).access_token
    api.remember(token)

    def broken(address: str) -> None:
        raise RuntimeError("SELECT secret_hash FROM machine_credentials -- boom")

    monkeypatch.setattr(api.services.mailboxes, "get", broken)
    status, headers, body = await curl("--oauth2-bearer", token, f"{api.url}/api/v1/me")
    document = _problem(status, headers, body, 500)
    error_id = document["error_id"]
    assert error_id in document["detail"]
    assert "SELECT" not in body and "Traceback" not in body and "boom" not in body
    assert any(error_id in r.getMessage() for r in caplog.records)


# -- professionals' PSC tokens ------------------------------------------------------------

CAMILLE = DemoProfessional("8" + RPPS, "Camille", "Martin", "Médecin")
LOUIS = DemoProfessional("810000000025", "Louis", "Durand")
PSC_CLIENT = "mssante-api-client"


@pytest.fixture(scope="module")
def provider_key() -> Any:
    return generate_key()


async def test_psc_tokens_on_me(
    services: Services, provider_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = DemoProvider(
        [CAMILLE, LOUIS], {PSC_CLIENT: ("psc-secret", ["http://127.0.0.1/cb"])},
        signing_key=provider_key,
    )  # fmt: skip
    await provider.start(allow_demo=True)
    validator = TokenValidator(provider.settings_for(PSC_CLIENT, "psc-secret"))
    server: HttpServer | None = None
    try:
        server, port = await start_http(
            create_app(services, token_validator=validator), "127.0.0.1", 0
        )
        me = f"http://127.0.0.1:{port}/api/v1/me"
        camille = provider.mint_access_token(CAMILLE.id_nat_ps)
        status, _, body = await curl("--oauth2-bearer", camille, me)
        assert status == 200, body
        assert json.loads(body) == {
            "login": CAMILLE.id_nat_ps,
            "kind": "professional",
            "id_nat_ps": CAMILLE.id_nat_ps,
            "mailboxes": [PER, ORG],
        }
        # A valid PSC token for a professional with no mailbox here.
        louis = provider.mint_access_token(LOUIS.id_nat_ps)
        status, headers, body = await curl("--oauth2-bearer", louis, me)
        _problem(status, headers, body, 403)
        # A PSC token without eIDAS 1 level, an expired one.
        weak = provider.mint_access_token(CAMILLE.id_nat_ps, acr="eidas0")
        status, headers, body = await curl("--oauth2-bearer", weak, me)
        _problem(status, headers, body, 401)
        assert 'error="insufficient_user_authentication"' in headers["www-authenticate"]
        old = provider.mint_access_token(CAMILLE.id_nat_ps, expires_in=-120)
        status, headers, body = await curl("--oauth2-bearer", old, me)
        _problem(status, headers, body, 401)
        # Our own client-credentials tokens still work on the same app.
        credentials = _machine_credentials(services)
        client_id, secret = await asyncio.to_thread(credentials.create_client, APP, actor="t")
        ours = await asyncio.to_thread(credentials.issue_token, client_id, secret)
        status, _, body = await curl("--oauth2-bearer", ours.access_token, me)
        assert status == 200 and json.loads(body)["kind"] == "application"
        for value in (camille, louis, weak, old, ours.access_token, secret):
            assert value not in caplog.text
    finally:
        if server is not None:
            await stop_http(server)
        validator.close()
        await provider.stop()


# -- HTTPS --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_https_with_the_operator_certificate(
    services: Services, space: LocalTrustSpace
) -> None:
    tls = services.config.tls
    server, port = await start_http(
        create_app(services),
        "127.0.0.1",
        0,
        ssl_certfile=tls.cert_file,
        ssl_keyfile=tls.key_file,
    )
    try:
        url = f"https://127.0.0.1:{port}/.well-known/jwks.json"
        status, _, body = await curl("--cacert", str(space.ca_file), url)
        assert status == 200 and json.loads(body)["keys"]

        def handshake(maximum: ssl.TLSVersion) -> str | None:
            ctx = ssl.create_default_context(cafile=str(space.ca_file))
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = maximum
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                try:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock:
                        return tls_sock.version()
                except (ssl.SSLError, OSError):
                    return None

        assert await asyncio.to_thread(handshake, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert await asyncio.to_thread(handshake, ssl.TLSVersion.TLSv1_1) is None
    finally:
        await stop_http(server)
