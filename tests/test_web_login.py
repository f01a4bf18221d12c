"""Web login through Pro Santé Connect and server-side sessions (R61, SC.SSI/IE.58).

httpx plays the browser against our HTTP app (``start_http`` on 127.0.0.1, a ``Services``
built from a ``LocalTrustSpace`` configuration whose ``[identity]`` points at the PSC-like
demo provider): ``/auth/login`` → the provider's page → choose the professional →
``/auth/callback`` → session cookie → ``/api/v1/session``. Sessions lock after 2 hours of
inactivity (a fake clock moves time). Runs on SQLite and PostgreSQL
(``MSSANTE_TEST_DB=postgresql``); no cookie, code or token may reach a log or a trace.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import select

from conftest import ALPHA
from mssante.config import ConfigError, validate_config
from mssante.domain.errors import AuthenticationFailed
from mssante.http import create_app, start_http, stop_http
from mssante.http.web_auth import LOGIN_COOKIE, SESSION_COOKIE, french_duration
from mssante.identity import LoginState
from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key
from mssante.runtime import Services
from mssante.services.mailboxes import Principal
from mssante.services.traces import list_events
from mssante.services.web_sessions import SessionExpired, WebSessionService
from mssante.storage.schema import login_states, trace_events, web_sessions
from mssante.testing.clients import seed_professional_mailbox
from mssante.testing.trust_space import LocalTrustSpace

CLIENT_ID, CLIENT_SECRET = "mssante-mail", "web-client-secret-0123456789"
CAMILLE = DemoProfessional("810000000017", "Camille", "Martin", "Médecin")
LEA = DemoProfessional("810000000025", "Léa", "Dubois", "Médecin généraliste")  # no BAL here
CAMILLE_BOX = "camille.martin@alpha.mssante.fr"
PUBLIC_URL = "https://webmail.alpha.mssante.fr"
KEY = generate_key()
HOUR = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LateApp:
    """An ASGI app set after the server started (its URL must be known to the provider)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Web:
    url: str
    provider: DemoProvider
    services: Services
    clock: FakeClock
    secrets: list[str] = field(default_factory=list)  # every cookie, code and token seen

    def remember(self, *values: str | None) -> None:
        self.secrets.extend(v for v in values if v)


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


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    """Set-Cookie headers by name: value and attributes (lower-case names)."""
    out: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs = {k: str(v) for k, v in morsel.items() if v}
            attrs["value"] = morsel.value
            attrs["raw"] = header
            out[name] = attrs
    return out


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


Factory = Callable[..., Awaitable[Web]]


@pytest.fixture
async def make_web(
    tmp_path: Path,
    database_url: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Factory]:
    # httpx/httpcore also log for the test's browser, whose URLs and Set-Cookie headers carry
    # the code and the cookies by nature; the server side's own requests (token endpoint,
    # userinfo, JWKS) carry none in their URLs. (set_level also sets the handler's level:
    # the DEBUG one comes last.)
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.WARNING, logger="httpcore")
    caplog.set_level(logging.DEBUG)
    cleanups: list[Callable[[], Awaitable[None]]] = []
    webs: list[Web] = []

    async def make(*, public_url: str = "") -> Web:
        late = LateApp()
        server, port = await start_http(late, "127.0.0.1", 0)
        cleanups.append(lambda: stop_http(server))
        url = f"http://127.0.0.1:{port}"
        callbacks = [f"{url}/auth/callback", f"{PUBLIC_URL}/auth/callback"]
        provider = DemoProvider(
            [CAMILLE, LEA], {CLIENT_ID: (CLIENT_SECRET, callbacks)}, signing_key=KEY
        )
        await provider.start(allow_demo=True)
        cleanups.append(provider.stop)
        space = LocalTrustSpace.create(
            tmp_path / f"space{len(webs)}",
            [ALPHA],
            database_urls=[database_url()],
            identity=provider.settings_for(CLIENT_ID, CLIENT_SECRET),
        )
        config = space.operators[0].config
        if public_url:
            http = config.http.model_copy(update={"public_url": public_url})
            config = config.model_copy(update={"http": http})
        services = Services(config)
        cleanups.append(lambda: _close(services))
        services.migrate()
        seed_professional_mailbox(services.mailboxes, CAMILLE_BOX, "10000000017", "pw-Camille-1")
        clock = FakeClock()
        services.web_sessions = WebSessionService(services.db, clock=clock)
        web = Web(url, provider, services, clock)
        web.remember(CLIENT_SECRET)
        for name in ("issue_access_token", "issue_id_token"):  # record PSC tokens as issued
            original = getattr(provider, name)

            def recording(*args: Any, _original: Any = original, **kwargs: Any) -> str:
                token: str = _original(*args, **kwargs)
                web.remember(token)
                return token

            monkeypatch.setattr(provider, name, recording)
        late.app = create_app(services, token_validator=services.token_validator)
        webs.append(web)
        return web

    try:
        yield make
        for web in webs:
            _assert_nothing_leaked(web, caplog)
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def _close(services: Services) -> None:
    services.close()


def _assert_nothing_leaked(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    assert records, "no log record captured"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    with web.services.db.read() as conn:
        traced = "\n".join(
            " ".join(str(v) for v in row) for row in conn.execute(select(trace_events)).all()
        )
        stored = "\n".join(
            " ".join(str(v) for v in row)
            for table in (web_sessions, login_states)
            for row in conn.execute(select(table)).all()
        )
    assert web.secrets, "the test saw no secret at all"
    for value in web.secrets:
        assert value not in logged, "a cookie, code or token was logged"
        assert value not in traced, "a cookie, code or token was traced"
        assert value not in stored, "a cookie or token was stored as is"


async def start_login(web: Web, browser: httpx.AsyncClient) -> tuple[str, httpx.Response]:
    """GET /auth/login; returns the PSC authorization URL and the answer."""
    answer = await browser.get(f"{web.url}/auth/login")
    assert answer.status_code == 302, answer.text
    login_cookie = set_cookies(answer)[LOGIN_COOKIE]
    web.remember(login_cookie["value"])
    location = answer.headers["location"]
    web.remember(query(location).get("state"), query(location).get("nonce"))
    return location, answer


async def at_provider(
    web: Web, browser: httpx.AsyncClient, auth_url: str, choice: str, action: str = "login"
) -> str:
    """The provider's page, the professional chosen; returns the callback URL (not followed)."""
    page = await browser.get(auth_url)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    assert choice in form.choices
    data = {**form.hidden, "action": action, "professional": choice}
    answer = await browser.post(urljoin(auth_url, form.action), data=data)
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    web.remember(query(callback).get("code"))
    return callback


async def log_in(web: Web, browser: httpx.AsyncClient, who: DemoProfessional = CAMILLE) -> str:
    """The whole login; returns the session cookie."""
    auth_url, _ = await start_login(web, browser)
    callback = await at_provider(web, browser, auth_url, who.id_nat_ps)
    answer = await browser.get(callback)
    assert answer.status_code == 303, answer.text
    token = set_cookies(answer)[SESSION_COOKIE]["value"]
    web.remember(token)
    return token


def events(web: Web, action: str) -> list[Any]:
    with web.services.db.read() as conn:
        return list_events(conn, action=action)


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"] == "about:blank"
    return body


# -- the flow ---------------------------------------------------------------------------


async def test_psc_login_end_to_end(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        auth_url, answer = await start_login(web, browser)
        params = query(auth_url)
        assert auth_url.startswith(f"{web.provider.issuer}/auth?")
        assert params["redirect_uri"] == f"{web.url}/auth/callback"
        assert params["client_id"] == CLIENT_ID
        assert params["scope"] == "openid scope_all"
        assert params["acr_values"] == "eidas1"
        assert params["code_challenge_method"] == "S256"
        assert answer.headers["cache-control"] == "no-store"
        login_cookie = set_cookies(answer)[LOGIN_COOKIE]
        assert login_cookie["httponly"] and login_cookie["samesite"].lower() == "lax"
        assert login_cookie["path"] == "/auth" and login_cookie["max-age"] == "600"
        assert "secure" not in login_cookie  # plain http on loopback

        callback = await at_provider(web, browser, auth_url, CAMILLE.id_nat_ps)
        assert callback.startswith(f"{web.url}/auth/callback?")
        answer = await browser.get(callback)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookies = set_cookies(answer)
        session = cookies[SESSION_COOKIE]
        web.remember(session["value"])
        assert session["httponly"] and session["samesite"].lower() == "lax"
        assert session["path"] == "/" and "secure" not in session
        assert "max-age" in cookies[LOGIN_COOKIE]  # the login cookie is cleared
        assert len(session["value"]) == 43  # 32 random bytes, URL-safe base64

        me = await browser.get(f"{web.url}/api/v1/session")
        assert me.status_code == 200, me.text
        assert me.headers["cache-control"] == "no-store"
        assert me.json() == {
            "login": CAMILLE_BOX,
            "kind": "professional",
            "id_nat_ps": CAMILLE.id_nat_ps,
            "mailboxes": [CAMILLE_BOX],
            "idle_timeout": 7200,
        }

    token = session["value"]
    with web.services.db.read() as conn:
        rows = conn.execute(select(web_sessions)).all()
        assert conn.execute(select(login_states)).all() == []  # used once, gone
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0].id_nat_ps == CAMILLE.id_nat_ps and rows[0].source == "127.0.0.1"
    (login,) = events(web, "web.login")
    assert login.outcome == "ok" and login.actor == CAMILLE_BOX and login.peer == "127.0.0.1"
    assert "mechanism=psc" in (login.detail or "")


async def test_callback_is_single_use_and_bound_to_the_browser(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        auth_url, _ = await start_login(web, browser)
        callback = await at_provider(web, browser, auth_url, CAMILLE.id_nat_ps)
        # Login CSRF: the callback opened in another browser (without the login cookie).
        async with httpx.AsyncClient() as other:
            answer = await other.get(callback)
        body = assert_problem(answer, 400)
        assert "recommencez" in body["detail"]
        assert SESSION_COOKIE not in set_cookies(answer)
        # The right browser logs in, once.
        first = await browser.get(callback)
        assert first.status_code == 303
        web.remember(set_cookies(first)[SESSION_COOKIE]["value"])
        browser.cookies.set(LOGIN_COOKIE, "x" * 43, domain="127.0.0.1", path="/auth")
        again = await browser.get(callback)
        assert_problem(again, 400)
    refused = [e for e in events(web, "web.login") if e.outcome == "refused"]
    assert len(refused) == 2 and all("no-login-state" in (e.detail or "") for e in refused)


async def test_acr_other_than_eidas1_is_refused(make_web: Factory) -> None:
    web = await make_web()
    web.provider.acr = "eidas0"  # the provider's tokens now carry a lower level
    async with httpx.AsyncClient() as browser:
        auth_url, _ = await start_login(web, browser)
        callback = await at_provider(web, browser, auth_url, CAMILLE.id_nat_ps)
        answer = await browser.get(callback)
        body = assert_problem(answer, 401)
        assert "niveau d'authentification" in body["detail"]
        assert SESSION_COOKIE not in set_cookies(answer)
        me = await browser.get(f"{web.url}/api/v1/session")
        assert_problem(me, 401)
    with web.services.db.read() as conn:
        assert conn.execute(select(web_sessions)).all() == []
    (refused,) = events(web, "web.login")
    assert refused.outcome == "refused"
    assert "insufficient_user_authentication" in (refused.detail or "")


async def test_denied_at_the_provider(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        auth_url, _ = await start_login(web, browser)
        callback = await at_provider(web, browser, auth_url, CAMILLE.id_nat_ps, action="deny")
        assert query(callback)["error"] == "access_denied"
        body = assert_problem(await browser.get(callback), 401)
        assert "refusée" in body["detail"]
    (refused,) = events(web, "web.login")
    assert refused.outcome == "refused" and "denied" in (refused.detail or "")


async def test_professional_without_mailbox_here_is_refused(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        auth_url, _ = await start_login(web, browser)
        callback = await at_provider(web, browser, auth_url, LEA.id_nat_ps)
        answer = await browser.get(callback)
        body = assert_problem(answer, 403)
        assert "Aucune BAL" in body["detail"]
        assert SESSION_COOKIE not in set_cookies(answer)
    (refused,) = events(web, "web.login")
    assert refused.outcome == "refused" and refused.actor == LEA.id_nat_ps
    assert "no-mailbox" in (refused.detail or "")


# -- sessions ---------------------------------------------------------------------------


async def test_session_locks_after_two_hours_of_inactivity(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        await log_in(web, browser)
        me = f"{web.url}/api/v1/session"
        for _ in range(3):  # activity within 2 hours keeps the session, well past 2 hours
            web.clock.advance(2 * HOUR - 60)
            assert (await browser.get(me)).status_code == 200
        web.clock.advance(2 * HOUR)
        answer = await browser.get(me)
        body = assert_problem(answer, 401)
        assert body["detail"].startswith("Session expirée après 2 heures d'inactivité")
        assert set_cookies(answer)[SESSION_COOKIE]["max-age"] == "0"  # cleared
        again = assert_problem(await browser.get(me), 401)
        assert again["detail"].startswith("Aucune session")
    with web.services.db.read() as conn:
        assert conn.execute(select(web_sessions)).all() == []
    (expired,) = events(web, "web.session.expired")
    assert expired.actor == CAMILLE_BOX and "reason=idle" in (expired.detail or "")


async def test_session_lifetime_is_bounded(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        await log_in(web, browser)
        me = f"{web.url}/api/v1/session"
        for _ in range(11):
            web.clock.advance(HOUR)
            assert (await browser.get(me)).status_code == 200
        web.clock.advance(HOUR)
        body = assert_problem(await browser.get(me), 401)
        assert "durée maximale de 12 heures" in body["detail"]
    (expired,) = events(web, "web.session.expired")
    assert "reason=lifetime" in (expired.detail or "")


async def test_logout(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        token = await log_in(web, browser)
        answer = await browser.post(f"{web.url}/auth/logout")
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert set_cookies(answer)[SESSION_COOKIE]["max-age"] == "0"
        assert_problem(await browser.get(f"{web.url}/api/v1/session"), 401)
    async with httpx.AsyncClient(cookies={SESSION_COOKIE: token}) as replay:  # a stolen copy
        body = assert_problem(await replay.get(f"{web.url}/api/v1/session"), 401)
        assert body["detail"].startswith("Session inconnue")
        assert (await replay.post(f"{web.url}/auth/logout")).status_code == 303
    (logout,) = events(web, "web.logout")
    assert logout.actor == CAMILLE_BOX and logout.outcome == "ok"


async def test_a_new_login_replaces_the_browser_session(make_web: Factory) -> None:
    web = await make_web()
    async with httpx.AsyncClient() as browser:
        first = await log_in(web, browser)
        second = await log_in(web, browser)
        assert first != second
        assert (await browser.get(f"{web.url}/api/v1/session")).status_code == 200
    with pytest.raises(AuthenticationFailed):
        web.services.web_sessions.touch(first)
    assert "reason=new-login" in (events(web, "web.logout")[0].detail or "")


@pytest.mark.parametrize("cookie", [None, "", "garbage", "A" * 43, "a%2F..%2F" * 5])
async def test_session_refused_without_a_valid_cookie(
    make_web: Factory, cookie: str | None
) -> None:
    web = await make_web()
    web.remember(CLIENT_SECRET)
    headers = {"cookie": f"{SESSION_COOKIE}={cookie}"} if cookie is not None else {}
    async with httpx.AsyncClient() as browser:
        body = assert_problem(await browser.get(f"{web.url}/api/v1/session", headers=headers), 401)
    assert body["title"] == "Authentification requise"


async def test_public_url_gives_the_redirect_uri_and_secure_cookies(make_web: Factory) -> None:
    web = await make_web(public_url=PUBLIC_URL)
    assert web.services.public_url == PUBLIC_URL
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(f"{web.url}/auth/login")
        assert answer.status_code == 302
        auth_url = answer.headers["location"]
        assert query(auth_url)["redirect_uri"] == f"{PUBLIC_URL}/auth/callback"
        login_cookie = set_cookies(answer)[LOGIN_COOKIE]
        assert login_cookie["secure"]
        web.remember(login_cookie["value"], query(auth_url)["state"])
        callback = await at_provider(web, browser, auth_url, CAMILLE.id_nat_ps)
        assert callback.startswith(f"{PUBLIC_URL}/auth/callback?")
        # The TLS proxy in front would forward this to us; httpx keeps Secure cookies for
        # https, so the cookies go by hand.
        local = web.url + callback.removeprefix(PUBLIC_URL)
        headers = {"cookie": f"{LOGIN_COOKIE}={login_cookie['value']}"}
        answer = await browser.get(local, headers=headers)
        assert answer.status_code == 303, answer.text
        session = set_cookies(answer)[SESSION_COOKIE]
        web.remember(session["value"])
        assert session["secure"] and session["httponly"]
        me = await browser.get(
            f"{web.url}/api/v1/session", headers={"cookie": f"{SESSION_COOKIE}={session['value']}"}
        )
        assert me.status_code == 200 and me.json()["login"] == CAMILLE_BOX


async def test_login_without_identity_provider(make_web: Factory) -> None:
    web = await make_web()
    web.services.oidc_settings = None
    app = create_app(web.services)
    server, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as browser:
            body = assert_problem(await browser.get(f"http://127.0.0.1:{port}/auth/login"), 503)
            assert "Pro Santé Connect" in body["detail"]
    finally:
        await stop_http(server)


# -- the service on its own ---------------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path, database_url: Callable[[], str]) -> Any:
    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])
    built = Services(space.operators[0].config)
    built.migrate()
    seed_professional_mailbox(built.mailboxes, CAMILLE_BOX, "10000000017", "pw-Camille-1")
    yield built
    built.close()


def _camille(services: Services) -> Principal:
    principal = services.mailboxes.principal_for_id_nat_ps(CAMILLE.id_nat_ps)
    assert principal is not None
    return principal


def test_idle_and_absolute_timeouts(services: Services) -> None:
    clock = FakeClock()
    sessions = WebSessionService(services.db, clock=clock)
    assert services.web_sessions.idle_timeout == 2 * HOUR  # the default wired in Services
    token = sessions.create(_camille(services), source="192.0.2.1", mechanism="psc")
    assert sessions.touch(token).login == CAMILLE_BOX
    clock.advance(2 * HOUR - 1)
    assert sessions.touch(token).id_nat_ps == CAMILLE.id_nat_ps
    clock.advance(2 * HOUR)  # exactly 2 hours since the last activity
    with pytest.raises(SessionExpired) as exc:
        sessions.touch(token)
    assert exc.value.reason == "idle" and isinstance(exc.value, AuthenticationFailed)
    with pytest.raises(AuthenticationFailed) as gone:
        sessions.touch(token)
    assert not isinstance(gone.value, SessionExpired)

    short = WebSessionService(services.db, idle_timeout=10, absolute_timeout=25, clock=clock)
    token = short.create(_camille(services), source=None, mechanism="psc")
    for _ in range(2):
        clock.advance(9)
        short.touch(token)
    clock.advance(7)
    with pytest.raises(SessionExpired) as exc:
        short.touch(token)
    assert exc.value.reason == "lifetime"


def test_revoke_and_purge(services: Services) -> None:
    clock = FakeClock()
    sessions = WebSessionService(services.db, clock=clock)
    camille = _camille(services)
    kept = sessions.create(camille, source="192.0.2.1", mechanism="psc")
    assert sessions.revoke(kept, source="192.0.2.1") is True
    assert sessions.revoke(kept) is False
    assert sessions.revoke("not a token") is False
    stale = sessions.create(camille, source=None, mechanism="psc")
    clock.advance(2 * HOUR + 1)
    fresh = sessions.create(camille, source=None, mechanism="psc")  # purges the stale one
    assert sessions.touch(fresh).login == CAMILLE_BOX
    with pytest.raises(AuthenticationFailed) as exc:
        sessions.touch(stale)
    assert not isinstance(exc.value, SessionExpired)  # purged already, traced then
    with services.db.read() as conn:
        expired = list_events(conn, action="web.session.expired")
    assert len(expired) == 1 and "(purged)" in (expired[0].detail or "")
    clock.advance(3 * HOUR)
    assert sessions.purge() == 1


def test_login_states_are_single_use_and_expire(services: Services) -> None:
    clock = FakeClock()
    sessions = WebSessionService(services.db, clock=clock)
    state = LoginState("s" * 43, "n" * 43, "v" * 86, created_at=clock())
    key = sessions.save_login_state(state)
    assert key != state.state and len(key) == 43
    popped = sessions.pop_login_state(key)
    assert popped is not None
    assert (popped.state, popped.nonce, popped.code_verifier) == ("s" * 43, "n" * 43, "v" * 86)
    assert popped.created_at == pytest.approx(state.created_at, abs=1e-3)
    assert sessions.pop_login_state(key) is None
    key = sessions.save_login_state(state)
    clock.advance(601)
    assert sessions.pop_login_state(key) is None
    assert sessions.pop_login_state("") is None
    with services.db.read() as conn:
        assert conn.execute(select(login_states)).all() == []


def test_french_duration() -> None:
    assert french_duration(7200) == "2 heures"
    assert french_duration(3600) == "1 heure"
    assert french_duration(12 * 3600) == "12 heures"
    assert french_duration(1800) == "30 minutes"
    assert french_duration(1) == "1 seconde"
    assert french_duration(90) == "90 secondes"


def test_public_url_setting(tmp_path: Path) -> None:
    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA])
    raw = space.operators[0].config.model_dump(mode="json")
    raw["http"]["public_url"] = "https://webmail.alpha.mssante.fr/"
    config = validate_config(raw, tmp_path)
    assert config.http.public_url == "https://webmail.alpha.mssante.fr"
    for bad in ("webmail.alpha.mssante.fr", "https://x.fr/mail", "ftp://x.fr", "https://x.fr?a"):
        raw["http"]["public_url"] = bad
        with pytest.raises(ConfigError) as exc:
            validate_config(raw, tmp_path)
        assert "http.public_url" in str(exc.value)
