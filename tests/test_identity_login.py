"""Webmail login through a PSC-like provider (R61): httpx plays the browser end to end."""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from mssante.domain.identifiers import luhn_check_digit
from mssante.identity import (
    PRESETS,
    LoginFailed,
    LoginState,
    RelyingParty,
    TokenValidator,
    preset,
    token_hash,
)
from mssante.identity.demo_provider import (
    DEMO_BANNER,
    DemoProfessional,
    DemoProvider,
    DemoRefused,
    generate_key,
)

WEBMAIL, WEBMAIL_SECRET = "mssante-webmail", "webmail-secret"
CALLBACK = "https://webmail.hopital-demo.mssante.fr/oidc/callback"
CAMILLE = DemoProfessional("810000005479", "Camille", "Martin", "Médecin")
INES = DemoProfessional("8" + "1000000321" + luhn_check_digit("1000000321"), "Inès", "Petit",
                        "Pharmacienne")  # fmt: skip
PROVIDER_KEY = generate_key()


@pytest.fixture
async def provider() -> AsyncIterator[DemoProvider]:
    clients = {WEBMAIL: (WEBMAIL_SECRET, [CALLBACK]), "other-app": ("other", [CALLBACK])}
    demo = DemoProvider([CAMILLE, INES], clients, signing_key=PROVIDER_KEY)
    await demo.start(allow_demo=True)
    yield demo
    await demo.stop()


@pytest.fixture
def rp(provider: DemoProvider) -> Iterator[RelyingParty]:
    party = RelyingParty(provider.settings_for(WEBMAIL, WEBMAIL_SECRET), CALLBACK)
    yield party
    party.close()


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.choices: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "input" and a.get("type") == "radio":
            self.choices.append(a["value"])


async def browse(auth_url: str, choice: str | None, action: str = "login") -> httpx.Response:
    """GET the login page, submit the form; returns the provider's answer (not followed)."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(auth_url)
        if page.status_code != 200:
            return page
        form = _Form()
        form.feed(page.text)
        data = {**form.hidden, "action": action}
        if choice is not None:
            data["professional"] = choice
        return await browser.post(urljoin(auth_url, form.action), data=data)


async def login(auth_url: str, choice: str) -> str:
    answer = await browse(auth_url, choice)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def test_full_login_gives_the_chosen_professional(
    provider: DemoProvider, rp: RelyingParty
) -> None:
    url, state = rp.begin()
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{provider.issuer}/auth?")
    assert query["scope"] == ["openid scope_all"]
    assert query["acr_values"] == ["eidas1"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["state"] == [state.state] and query["nonce"] == [state.nonce]
    assert state.code_verifier not in url

    async with httpx.AsyncClient() as browser:
        page = await browser.get(url)
    assert page.status_code == 200
    assert DEMO_BANNER in html.unescape(page.text)
    assert "Camille MARTIN" in page.text and "Inès PETIT" in page.text
    assert page.headers["x-frame-options"] == "DENY"

    location = await login(url, INES.id_nat_ps)
    assert location.startswith(CALLBACK + "?")
    result = await rp.finish(location, state)
    assert result.id_nat_ps == INES.id_nat_ps
    assert result.subject == INES.subject != INES.id_nat_ps  # the idNat_PS is SubjectNameID
    assert result.id_token_claims["acr"] == "eidas1"
    assert result.id_token_claims["nonce"] == state.nonce
    assert (result.given_name, result.family_name) == ("Inès", "Petit")
    assert result.access_token not in repr(result) and result.id_token not in repr(result)

    validator = TokenValidator(provider.settings_for(WEBMAIL))
    try:
        identity = await validator.validate_async(result.access_token)
    finally:
        validator.close()
    assert identity.id_nat_ps == INES.id_nat_ps
    assert abs((identity.expires_at - result.expires_at).total_seconds()) < 5


async def test_client_secret_post_and_query_params(provider: DemoProvider) -> None:
    settings = provider.settings_for(WEBMAIL, WEBMAIL_SECRET)
    rp = RelyingParty(settings, CALLBACK, client_auth_method="client_secret_post")
    try:
        url, state = rp.begin()
        location = await login(url, CAMILLE.id_nat_ps)
        params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert params["iss"] == provider.issuer
        assert (await rp.finish(params, state)).id_nat_ps == CAMILLE.id_nat_ps
    finally:
        rp.close()


async def test_signed_userinfo(provider: DemoProvider, rp: RelyingParty) -> None:
    provider.userinfo_signed = True
    url, state = rp.begin()
    result = await rp.finish(await login(url, CAMILLE.id_nat_ps), state)
    assert result.id_nat_ps == CAMILLE.id_nat_ps
    assert result.userinfo["SubjectNameID"] == CAMILLE.id_nat_ps


async def test_shared_http_client(provider: DemoProvider) -> None:
    async with httpx.AsyncClient() as http:
        rp = RelyingParty(provider.settings_for(WEBMAIL, WEBMAIL_SECRET), CALLBACK, http=http)
        url, state = rp.begin()
        assert (
            await rp.finish(await login(url, INES.id_nat_ps), state)
        ).id_nat_ps == INES.id_nat_ps
        rp.close()


async def test_acr_other_than_eidas1_is_refused(provider: DemoProvider, rp: RelyingParty) -> None:
    provider.acr = "eidas0"
    url, state = rp.begin()
    with pytest.raises(LoginFailed) as info:
        await rp.finish(await login(url, CAMILLE.id_nat_ps), state)
    assert info.value.error == "insufficient_user_authentication"


async def test_nonce_mismatch_is_refused(rp: RelyingParty) -> None:
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    with pytest.raises(LoginFailed, match="nonce"):
        await rp.finish(location, dataclasses.replace(state, nonce="another-nonce"))


async def test_state_mismatch_is_refused(rp: RelyingParty) -> None:
    url, _ = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    _, other = rp.begin()
    with pytest.raises(LoginFailed, match="state mismatch"):
        await rp.finish(location, other)


async def test_wrong_pkce_verifier_is_refused(rp: RelyingParty) -> None:
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    wrong = dataclasses.replace(state, code_verifier="x" * 64)
    with pytest.raises(LoginFailed) as info:
        await rp.finish(location, wrong)
    assert info.value.error == "invalid_grant"


async def test_code_is_single_use(rp: RelyingParty) -> None:
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    await rp.finish(location, state)
    with pytest.raises(LoginFailed) as info:
        await rp.finish(location, state)
    assert info.value.error == "invalid_grant"


async def test_code_is_bound_to_the_client(provider: DemoProvider, rp: RelyingParty) -> None:
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    thief = RelyingParty(provider.settings_for("other-app", "other"), CALLBACK)
    try:
        with pytest.raises(LoginFailed, match="invalid_grant"):
            await thief.finish(location, state)
    finally:
        thief.close()


async def test_wrong_client_secret(provider: DemoProvider) -> None:
    rp = RelyingParty(provider.settings_for(WEBMAIL, "not-the-secret"), CALLBACK)
    try:
        url, state = rp.begin()
        with pytest.raises(LoginFailed) as info:
            await rp.finish(await login(url, CAMILLE.id_nat_ps), state)
        assert info.value.error == "invalid_client"
    finally:
        rp.close()


async def test_user_refuses(rp: RelyingParty) -> None:
    url, state = rp.begin()
    answer = await browse(url, None, action="deny")
    assert answer.status_code == 302
    with pytest.raises(LoginFailed, match="access_denied"):
        await rp.finish(answer.headers["location"], state)


async def test_unknown_redirect_uri_is_never_redirected_to(provider: DemoProvider) -> None:
    rp = RelyingParty(provider.settings_for(WEBMAIL, WEBMAIL_SECRET), "https://evil.example/cb")
    try:
        url, _ = rp.begin()
        async with httpx.AsyncClient() as browser:
            answer = await browser.get(url)
        assert answer.status_code == 400 and "location" not in answer.headers
        assert DEMO_BANNER in html.unescape(answer.text)
    finally:
        rp.close()


async def test_pkce_is_required(provider: DemoProvider, rp: RelyingParty) -> None:
    url, state = rp.begin()
    plain = url.replace("code_challenge_method=S256", "code_challenge_method=plain")
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(plain)
    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["location"]
    with pytest.raises(LoginFailed):
        await rp.finish(answer.headers["location"], state)


async def test_callback_from_another_issuer_is_refused(rp: RelyingParty) -> None:
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    forged = location.replace("iss=http", "iss=https%3A%2F%2Fevil.example%2F&x=http")
    with pytest.raises(LoginFailed, match="issuer"):
        await rp.finish(forged, state)


async def test_login_state_expires(provider: DemoProvider) -> None:
    settings = provider.settings_for(WEBMAIL, WEBMAIL_SECRET)
    rp = RelyingParty(settings, CALLBACK, max_login_age=600)
    try:
        url, state = rp.begin()
        location = await login(url, CAMILLE.id_nat_ps)
        old = dataclasses.replace(state, created_at=state.created_at - 601)
        with pytest.raises(LoginFailed, match="too long"):
            await rp.finish(location, old)
    finally:
        rp.close()


async def test_page_escapes_professional_names() -> None:
    evil = DemoProfessional("810000005479", "<script>alert(1)</script>", 'O"Neil', "Médecin")
    demo = DemoProvider([evil], {WEBMAIL: (WEBMAIL_SECRET, [CALLBACK])}, signing_key=PROVIDER_KEY)
    await demo.start(allow_demo=True)
    try:
        rp = RelyingParty(demo.settings_for(WEBMAIL, WEBMAIL_SECRET), CALLBACK)
        url, state = rp.begin()
        url = url.replace(f"state={state.state}", "state=%22%3E%3Cb%3E")
        async with httpx.AsyncClient() as browser:
            page = await browser.get(url)
        rp.close()
    finally:
        await demo.stop()
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert '"><b>' not in page.text and "&quot;&gt;&lt;b&gt;" in page.text


async def test_demo_refuses_to_start_without_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = DemoProvider(
        [CAMILLE], {WEBMAIL: (WEBMAIL_SECRET, [CALLBACK])}, signing_key=PROVIDER_KEY
    )
    with pytest.raises(DemoRefused, match="allow_demo"):
        await demo.start()
    monkeypatch.setenv("MSSANTE_ENVIRONMENT", "production")
    with pytest.raises(DemoRefused, match="production"):
        await demo.start(allow_demo=True)
    assert demo.issuer is None


async def test_no_token_in_logs_during_a_login(
    provider: DemoProvider, rp: RelyingParty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, state = rp.begin()
    location = await login(url, CAMILLE.id_nat_ps)
    result = await rp.finish(location, state)
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert token_hash(result.id_token) in caplog.text
    for secret in (result.access_token, result.id_token, state.code_verifier, WEBMAIL_SECRET):
        assert secret not in caplog.text
    # httpcore traces the simulated browser's response headers (the Location with the code);
    # nothing of the platform or the provider logs it.
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpcore"))
    assert code not in ours


def test_logout_url() -> None:
    rp = RelyingParty(preset("psc-sandbox", "webmail", "s"), CALLBACK)
    try:
        url = rp.logout_url("the-id-token", "https://webmail.example.mssante.fr/", "st")
        assert url is not None
        assert url.startswith(PRESETS["psc-sandbox"].end_session_endpoint + "?")  # type: ignore[operator]
        assert "id_token_hint=the-id-token" in url and "state=st" in url
    finally:
        rp.close()


def test_begin_adds_but_never_replaces_parameters() -> None:
    rp = RelyingParty(preset("psc-sandbox", "webmail", "s"), CALLBACK)
    try:
        url, _ = rp.begin(prompt="login")
        assert url.startswith("https://wallet.bas.psc.esante.gouv.fr/auth?")
        assert parse_qs(urlsplit(url).query)["prompt"] == ["login"]
        with pytest.raises(ValueError, match="state"):
            rp.begin(state="chosen-by-caller")
    finally:
        rp.close()


def test_login_state_repr_hides_the_verifier() -> None:
    state = LoginState("s", "n", "verifier-secret-value", 0.0)
    assert "verifier-secret-value" not in repr(state)
