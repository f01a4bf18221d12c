"""Access-token validation (R14–R17) against a running demo PSC provider, and the PSC presets."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import RSAKey

from mssante.domain.identifiers import luhn_check_digit
from mssante.identity import (
    DISCOVERY_URLS,
    PRESETS,
    InvalidToken,
    OidcSettings,
    ProviderUnavailable,
    TokenValidator,
    from_discovery,
    preset,
    settings_from_metadata,
    token_hash,
)
from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key

CLIENT_ID, CLIENT_SECRET = "mssante-imap", "imap-secret"
CAMILLE = DemoProfessional("810000005479", "Camille", "Martin", "Médecin")
LOUIS = DemoProfessional("8" + "1000000123" + luhn_check_digit("1000000123"), "Louis", "Durand")


PROVIDER_KEY = generate_key()  # RSA generation is slow: one key for the module


@pytest.fixture
async def provider() -> AsyncIterator[DemoProvider]:
    clients = {CLIENT_ID: (CLIENT_SECRET, ["http://127.0.0.1/cb"])}
    demo = DemoProvider([CAMILLE, LOUIS], clients, signing_key=PROVIDER_KEY)
    await demo.start(allow_demo=True)
    yield demo
    await demo.stop()


class Clock:
    """Wall clock plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_validator(provider: DemoProvider, clock: Clock) -> Iterator[Callable[..., TokenValidator]]:
    made: list[TokenValidator] = []

    def make(settings: OidcSettings | None = None, **kwargs: object) -> TokenValidator:
        settings = settings or provider.settings_for(CLIENT_ID, CLIENT_SECRET)
        validator = TokenValidator(settings, clock=clock, **kwargs)  # type: ignore[arg-type]
        made.append(validator)
        return validator

    yield make
    for validator in made:
        validator.close()


@pytest.fixture
def validator(make_validator: Callable[..., TokenValidator]) -> TokenValidator:
    return make_validator()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


async def refused(validator: TokenValidator, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        await validator.validate_async(token)
    exc = info.value
    if token:
        assert token not in str(exc) and token not in repr(exc)
        assert token not in str(exc.__cause__) and token not in str(exc.__context__)
    return exc


# --- acceptance --------------------------------------------------------------------------------


async def test_accepts_a_token_minted_by_the_provider(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    token = provider.mint_access_token(CAMILLE.id_nat_ps)
    identity = await validator.validate_async(token)
    assert identity.id_nat_ps == "810000005479"
    assert identity.subject == CAMILLE.subject != CAMILLE.id_nat_ps
    assert identity.issuer == provider.issuer
    assert identity.acr == "eidas1"
    assert identity.token_hash == hashlib.sha256(token.encode()).hexdigest()[:16]
    assert identity.token_hash == token_hash(token)
    assert (identity.given_name, identity.family_name) == ("Camille", "Martin")
    assert identity.client_id == CLIENT_ID
    assert "scope_all" in identity.scopes
    assert abs((identity.expires_at - datetime.now(UTC)).total_seconds() - 600) < 5
    assert 590 < identity.seconds_left() <= 600
    assert token not in repr(identity)


async def test_expiry_within_leeway_is_accepted(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    token = provider.mint_access_token(LOUIS.id_nat_ps, expires_in=-10)
    assert (await validator.validate_async(token)).id_nat_ps == LOUIS.id_nat_ps


async def test_preferred_username_is_used_without_subject_name_id(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    token = provider.mint_access_token(LOUIS.id_nat_ps, omit_claims=["SubjectNameID"])
    assert (await validator.validate_async(token)).id_nat_ps == LOUIS.id_nat_ps


@pytest.mark.parametrize("signed", [False, True])
async def test_userinfo_gives_the_id_nat_ps_when_the_token_lacks_it(
    provider: DemoProvider, validator: TokenValidator, signed: bool
) -> None:
    provider.userinfo_signed = signed
    token = provider.mint_access_token(
        CAMILLE.id_nat_ps, omit_claims=["SubjectNameID", "preferred_username", "given_name"]
    )
    identity = await validator.validate_async(token)
    assert identity.id_nat_ps == CAMILLE.id_nat_ps
    assert identity.given_name == "Camille"  # from userinfo


async def test_without_userinfo_fallback_a_token_without_id_is_refused(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    validator = make_validator(userinfo_fallback=False)
    token = provider.mint_access_token(
        CAMILLE.id_nat_ps, omit_claims=["SubjectNameID", "preferred_username"]
    )
    assert "SubjectNameID" in (await refused(validator, token)).reason


async def test_listed_audiences_are_accepted(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    settings = provider.settings_for(CLIENT_ID, audience=("lps-a", "lps-b"))
    validator = make_validator(settings)
    token = provider.mint_access_token(CAMILLE.id_nat_ps, audience=["account", "lps-b"])
    assert (await validator.validate_async(token)).id_nat_ps == CAMILLE.id_nat_ps
    own = provider.mint_access_token(CAMILLE.id_nat_ps)  # aud = CLIENT_ID, not listed
    assert (await refused(validator, own)).reason == "audience not accepted"


# --- refusals ----------------------------------------------------------------------------------

_WRONG_ISSUER = PRESETS["psc-production"].issuer
MINT_CASES: dict[str, tuple[dict[str, object], str, str]] = {
    "expired": ({"expires_in": -120}, "token expired", "invalid_token"),
    # Times relative to now are resolved when the test runs (see _resolved), not at import:
    # the suite may start long before this test.
    "not yet valid": ({"not_before": 300.0}, "not yet valid", "invalid_token"),
    "wrong issuer": ({"issuer": _WRONG_ISSUER}, "issuer not accepted", "invalid_token"),
    "wrong audience": ({"audience": "another-client"}, "audience not accepted", "invalid_token"),
    "no audience": ({"omit_claims": ["aud"]}, "audience not accepted", "invalid_token"),
    "acr eidas2": ({"acr": "eidas2"}, "acr", "insufficient_user_authentication"),
    "acr missing": ({"omit_claims": ["acr"]}, "acr", "insufficient_user_authentication"),
    "no exp": ({"omit_claims": ["exp"]}, "missing exp", "invalid_token"),
    "exp not a number": ({"extra_claims": {"exp": "soon"}}, "malformed exp", "invalid_token"),
    "iat in the future": (
        {"extra_claims": {"iat": 3600.0}},
        "issued in the future",
        "invalid_token",
    ),
    "id token": ({"extra_claims": {"typ": "ID"}}, "not an access token", "invalid_token"),
    "no sub": ({"omit_claims": ["sub"]}, "missing sub", "invalid_token"),
    "bad idNat_PS": (
        {"extra_claims": {"SubjectNameID": "810000005478"}},
        "not a valid idNat_PS",
        "invalid_token",
    ),
}


def _resolved(kwargs: dict[str, object]) -> dict[str, object]:
    """The mint arguments with the future offsets of MINT_CASES turned into times."""
    now = time.time()
    out = dict(kwargs)
    if isinstance(out.get("not_before"), float):
        out["not_before"] = now + float(out["not_before"])  # type: ignore[arg-type]
    extra = out.get("extra_claims")
    if isinstance(extra, dict) and isinstance(extra.get("iat"), float):
        out["extra_claims"] = {**extra, "iat": now + extra["iat"]}
    return out


@pytest.mark.parametrize("case", list(MINT_CASES))
async def test_refuses_deviant_tokens(
    provider: DemoProvider, validator: TokenValidator, case: str
) -> None:
    kwargs, reason, error = _resolved(MINT_CASES[case][0]), MINT_CASES[case][1], MINT_CASES[case][2]
    token = provider.mint_access_token(CAMILLE.id_nat_ps, **kwargs)  # type: ignore[arg-type]
    exc = await refused(validator, token)
    assert reason in exc.reason
    assert exc.error == error
    assert exc.temporary is False


@pytest.mark.parametrize("kty", ["RSA", "EC"])
async def test_refuses_a_token_signed_by_another_key(
    provider: DemoProvider, validator: TokenValidator, kty: str
) -> None:
    token = provider.mint_access_token(CAMILLE.id_nat_ps, key=generate_key(kty))  # type: ignore[arg-type]
    assert (await refused(validator, token)).reason == "unknown signing key"


async def test_refuses_another_key_that_claims_the_provider_kid(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    kid = str(provider.signing_key.kid)
    impostor = RSAKey.generate_key(2048, parameters={"kid": kid})
    token = provider.mint_access_token(CAMILLE.id_nat_ps, key=impostor)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == kid
    assert (await refused(validator, token)).reason == "bad signature"


async def test_refuses_alg_none(provider: DemoProvider, validator: TokenValidator) -> None:
    claims = _payload(provider.mint_access_token(CAMILLE.id_nat_ps))
    header = {"alg": "none", "typ": "JWT", "kid": provider.signing_key.kid}
    for signature in ("", _b64(b"x")):
        token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
        exc = await refused(validator, token + signature)
        assert exc.reason == "signature algorithm not allowed"


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
async def test_refuses_hs256_signed_with_the_public_key(
    provider: DemoProvider, validator: TokenValidator, secret_form: str
) -> None:
    public = provider.signing_key.as_dict(private=False)
    if secret_form == "pem":
        secret = provider.signing_key.public_key.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(public).encode()
    claims = _payload(provider.mint_access_token(CAMILLE.id_nat_ps))
    header = {"alg": "HS256", "typ": "JWT", "kid": public["kid"]}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    exc = await refused(validator, f"{signing_input}.{_b64(mac)}")
    assert exc.reason == "signature algorithm not allowed"


GARBAGE = [
    "",
    "not-a-token",
    "a.b.c",
    "a.b",
    "....",
    "é.é.é",
    f"{_b64(b'{')}.{_b64(b'{}')}.{_b64(b'sig')}",
    f"{_b64(b'[]')}.{_b64(b'{}')}.{_b64(b'sig')}",
    f"{_b64(json.dumps({'alg': 'RS256'}).encode())}.{_b64(b'not json')}.{_b64(b'sig')}",
    "x" * 20000,
]


@pytest.mark.parametrize("token", GARBAGE, ids=range(len(GARBAGE)))
async def test_refuses_garbage(validator: TokenValidator, token: str) -> None:
    exc = await refused(validator, token)
    assert exc.error == "invalid_token"


async def test_refuses_a_tampered_payload(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    header, _, signature = provider.mint_access_token(CAMILLE.id_nat_ps).split(".")
    other = provider.mint_access_token(LOUIS.id_nat_ps).split(".")[1]
    assert (await refused(validator, f"{header}.{other}.{signature}")).reason == "bad signature"


async def test_required_scope(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    validator = make_validator(required_scopes={"scope_all"})
    assert await validator.validate_async(provider.mint_access_token(CAMILLE.id_nat_ps))
    strict = make_validator(required_scopes={"mail"})
    exc = await refused(strict, provider.mint_access_token(CAMILLE.id_nat_ps))
    assert exc.error == "insufficient_scope"
    assert exc.sasl_failure("openid scope_all") == {
        "status": "insufficient_scope",
        "schemes": "bearer",
        "scope": "openid scope_all",
    }


# --- JWKS cache, rotation, rate limit ----------------------------------------------------------


async def test_key_rotation_refreshes_the_jwks_once(
    provider: DemoProvider, validator: TokenValidator, clock: Clock
) -> None:
    await validator.validate_async(provider.mint_access_token(CAMILLE.id_nat_ps))
    assert provider.jwks_requests == 1
    await validator.validate_async(provider.mint_access_token(LOUIS.id_nat_ps))
    assert provider.jwks_requests == 1  # cached
    clock.offset += 3600 - 1  # later that day, the provider rotates its key (cache still fresh)
    new_kid = provider.rotate_key(keep_previous=False)
    token = provider.mint_access_token(CAMILLE.id_nat_ps, expires_in=2 * 3600)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] == new_kid
    assert (await validator.validate_async(token)).id_nat_ps == CAMILLE.id_nat_ps
    assert provider.jwks_requests == 2


async def test_unknown_kid_refresh_is_rate_limited(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator], clock: Clock
) -> None:
    validator = make_validator(min_jwks_refresh_interval=30)
    await validator.validate_async(provider.mint_access_token(CAMILLE.id_nat_ps))
    assert provider.jwks_requests == 1
    attacker = generate_key()
    for _ in range(20):
        forged = provider.mint_access_token(CAMILLE.id_nat_ps, key=attacker)
        assert (await refused(validator, forged)).reason == "unknown signing key"
    assert provider.jwks_requests == 1  # the forged kids cost nothing
    provider.rotate_key()
    rotated = provider.mint_access_token(CAMILLE.id_nat_ps)
    assert (await refused(validator, rotated)).reason == "unknown signing key"  # too soon
    assert provider.jwks_requests == 1
    clock.offset += 31
    assert (await validator.validate_async(rotated)).id_nat_ps == CAMILLE.id_nat_ps
    assert provider.jwks_requests == 2
    for _ in range(5):
        await refused(validator, provider.mint_access_token(LOUIS.id_nat_ps, key=attacker))
    assert provider.jwks_requests == 2


async def test_jwks_is_fetched_again_after_its_ttl(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator], clock: Clock
) -> None:
    validator = make_validator(provider.settings_for(CLIENT_ID, jwks_cache_ttl=60))
    token = provider.mint_access_token(CAMILLE.id_nat_ps)
    await validator.validate_async(token)
    clock.offset += 30
    await validator.validate_async(token)
    assert provider.jwks_requests == 1
    clock.offset += 31
    await validator.validate_async(token)
    assert provider.jwks_requests == 2


async def test_concurrent_validations_fetch_the_jwks_once(
    provider: DemoProvider, validator: TokenValidator
) -> None:
    tokens = [provider.mint_access_token(p.id_nat_ps) for p in (CAMILLE, LOUIS) * 10]
    identities = await asyncio.gather(*(validator.validate_async(t) for t in tokens))
    assert [i.id_nat_ps for i in identities] == [p.id_nat_ps for p in (CAMILLE, LOUIS) * 10]
    assert provider.jwks_requests == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_jwks_is_a_temporary_failure(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    settings = dataclasses.replace(
        provider.settings_for(CLIENT_ID), jwks_uri=f"http://127.0.0.1:{_closed_port()}/certs"
    )
    validator = make_validator(settings)
    exc = await refused(validator, provider.mint_access_token(CAMILLE.id_nat_ps))
    assert isinstance(exc, ProviderUnavailable)
    assert exc.temporary and exc.error == "temporarily_unavailable"


# --- introspection -----------------------------------------------------------------------------


async def test_introspection_active_and_revoked(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    validator = make_validator(use_introspection=True)
    token = provider.mint_access_token(CAMILLE.id_nat_ps)
    assert (await validator.validate_async(token)).id_nat_ps == CAMILLE.id_nat_ps
    provider.revoke(token)
    assert "not active" in (await refused(validator, token)).reason


async def test_introspection_with_bad_client_credentials_is_temporary(
    provider: DemoProvider, make_validator: Callable[..., TokenValidator]
) -> None:
    validator = make_validator(provider.settings_for(CLIENT_ID, "wrong"), use_introspection=True)
    exc = await refused(validator, provider.mint_access_token(CAMILLE.id_nat_ps))
    assert exc.temporary


def test_introspection_needs_an_endpoint() -> None:
    settings = preset("psc-sandbox", "client", introspection_endpoint=None)
    with pytest.raises(ValueError, match="introspection"):
        TokenValidator(settings, use_introspection=True)
    with pytest.raises(ValueError, match="client_id or an audience"):
        TokenValidator(PRESETS["psc-sandbox"])


# --- R17: no token in logs ---------------------------------------------------------------------


async def test_tokens_never_reach_the_logs(
    provider: DemoProvider,
    make_validator: Callable[..., TokenValidator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    validator = make_validator(use_introspection=True)
    good = provider.mint_access_token(CAMILLE.id_nat_ps)
    no_id = provider.mint_access_token(LOUIS.id_nat_ps, omit_claims=["SubjectNameID"])
    no_id = provider.mint_access_token(
        LOUIS.id_nat_ps, omit_claims=["SubjectNameID", "preferred_username"]
    )
    bad = [
        provider.mint_access_token(CAMILLE.id_nat_ps, expires_in=-3600),
        provider.mint_access_token(CAMILLE.id_nat_ps, acr="eidas0"),
        provider.mint_access_token(CAMILLE.id_nat_ps, key=generate_key()),
        good[:-4] + "AAAA",
    ]
    await validator.validate_async(good)
    await validator.validate_async(no_id)
    for token in bad:
        await refused(validator, token)
    text = caplog.text
    assert "refused" in text and token_hash(bad[0]) in text
    for token in [good, no_id, *bad]:
        assert token not in text
        assert token.split(".")[2] not in text  # not even the signature


# --- settings and presets ----------------------------------------------------------------------


def test_presets_hold_the_documented_psc_urls() -> None:
    prod, bas = PRESETS["psc-production"], PRESETS["psc-sandbox"]
    realm = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
    assert prod.issuer == realm
    assert prod.authorization_endpoint == "https://wallet.esw.esante.gouv.fr/auth"
    assert prod.token_endpoint == f"{realm}/protocol/openid-connect/token"
    assert prod.userinfo_endpoint == f"{realm}/protocol/openid-connect/userinfo"
    assert prod.jwks_uri == f"{realm}/protocol/openid-connect/certs"
    assert prod.introspection_endpoint == f"{realm}/protocol/openid-connect/token/introspect"
    assert prod.end_session_endpoint == f"{realm}/protocol/openid-connect/logout"
    assert DISCOVERY_URLS["psc-production"] == (f"{realm}/.well-known/wallet-openid-configuration")
    bas_realm = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
    assert bas.issuer == bas_realm
    assert bas.authorization_endpoint == "https://wallet.bas.psc.esante.gouv.fr/auth"
    assert bas.token_endpoint == f"{bas_realm}/protocol/openid-connect/token"
    assert bas.userinfo_endpoint == f"{bas_realm}/protocol/openid-connect/userinfo"
    assert bas.jwks_uri == f"{bas_realm}/protocol/openid-connect/certs"
    assert bas.introspection_endpoint == f"{bas_realm}/protocol/openid-connect/token/introspect"
    for settings in (prod, bas):
        assert (settings.scope, settings.required_acr) == ("openid scope_all", "eidas1")
        assert (settings.jwks_cache_ttl, settings.leeway) == (3600, 30)


def test_preset_with_client_and_audience() -> None:
    settings = preset("psc-production", "operator-x", "s3cr3t-value", audience="lps-y")
    assert settings.client_id == "operator-x"
    assert settings.accepted_audiences == ("lps-y",)
    assert "s3cr3t-value" not in repr(settings)
    assert preset("psc-sandbox", "c").accepted_audiences == ("c",)
    assert preset("psc-sandbox", "c", audience=["a", "b"]).audience == ("a", "b")
    with pytest.raises(ValueError, match="unknown identity provider preset"):
        preset("keycloak")


@pytest.mark.parametrize(
    "url", ["http://idp.example.org/realm", "ftp://127.0.0.1/x", "/relative/path"]
)
def test_settings_refuse_insecure_endpoints(url: str) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(PRESETS["psc-sandbox"], jwks_uri=url)


async def test_settings_from_the_demo_discovery_document(provider: DemoProvider) -> None:
    url = f"{provider.issuer}/.well-known/openid-configuration"
    discovered = await asyncio.to_thread(
        from_discovery, url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    assert discovered == provider.settings_for(CLIENT_ID, CLIENT_SECRET)
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(url)).json()
    assert metadata["acr_values_supported"] == ["eidas1"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    with pytest.raises(ValueError, match="does not match"):
        settings_from_metadata(
            metadata, discovery_url=DISCOVERY_URLS["psc-production"], client_id="x"
        )


def test_token_identity_expiry_helper() -> None:
    from mssante.identity import TokenIdentity

    now = datetime.now(UTC)
    identity = TokenIdentity("s", "810000005479", "iss", now + timedelta(seconds=90), "eidas1", "h")
    assert 89 < identity.seconds_left(now + timedelta(seconds=0.5)) < 90
