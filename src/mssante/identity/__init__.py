"""Identity and access: Pro Santé Connect logins and bearer tokens (SPEC §1.6, R14–R17, R61).

Pro Santé Connect (PSC) is the national OpenID Connect provider of health professionals (CPS
card, e-CPS app). The platform uses it twice:

* **Webmail login** (R61), :class:`~mssante.identity.relying_party.RelyingParty`: authorization
  code with PKCE S256, ``scope=openid scope_all``, ``acr_values=eidas1``, ``state`` and
  ``nonce``. ``begin()`` returns the URL to send the browser to and a ``LoginState`` that the
  web layer keeps server-side; ``await finish(callback_url, login_state)`` exchanges the code,
  checks the ID token (JWKS signature, ``iss``, ``aud``, ``exp``, ``nonce``,
  ``acr == eidas1``) and reads the idNat_PS from the userinfo claim ``SubjectNameID``.
* **Mail clients** (R14–R17), :class:`~mssante.identity.tokens.TokenValidator`: SMTP ``AUTH
  XOAUTH2`` and IMAP ``AUTHENTICATE XOAUTH2`` carry a PSC access token. ``validate(token)``
  (blocking; ``validate_async`` runs it in a thread) checks the JWS signature against the
  cached realm JWKS (RS256/PS256/ES256 only), ``iss``, ``aud``, ``exp``/``nbf``/``iat`` with
  leeway, ``acr == eidas1`` and optionally RFC 7662 introspection, and returns a
  ``TokenIdentity`` (``id_nat_ps`` from ``SubjectNameID``, ``expires_at``, ``token_hash``).
  Refusals raise ``InvalidToken(reason, error)``; tokens are never logged, only
  ``token_hash`` (first 16 hex digits of SHA-256, R17).

Settings (:mod:`~mssante.identity.settings`): ``OidcSettings`` holds the endpoints and the
client credentials. ``PRESETS`` has ``psc-production`` (issuer
``https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet``, login page
``https://wallet.esw.esante.gouv.fr/auth``) and ``psc-sandbox`` (the "BAS":
``auth.bas.psc.esante.gouv.fr`` / ``wallet.bas.psc.esante.gouv.fr``), with token, userinfo,
introspection, logout and certs under ``<issuer>/protocol/openid-connect/``. Use
``preset("psc-sandbox", client_id, client_secret)`` or ``from_discovery(DISCOVERY_URLS[…])``.

For the demo and the tests, :mod:`~mssante.identity.demo_provider` runs a PSC look-alike
provider on loopback (``DemoProvider(...).start(allow_demo=True)``); it refuses to start
without that opt-in and when ``MSSANTE_ENVIRONMENT=production``. It is not imported here.
"""

from mssante.identity.errors import InvalidToken, LoginFailed, ProviderUnavailable, token_hash
from mssante.identity.jwks import ALLOWED_ALGORITHMS, JwksCache
from mssante.identity.relying_party import LoginResult, LoginState, RelyingParty
from mssante.identity.settings import (
    DISCOVERY_URLS,
    PRESETS,
    OidcSettings,
    from_discovery,
    preset,
    settings_from_metadata,
)
from mssante.identity.tokens import TokenIdentity, TokenValidator

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DISCOVERY_URLS",
    "PRESETS",
    "InvalidToken",
    "JwksCache",
    "LoginFailed",
    "LoginResult",
    "LoginState",
    "OidcSettings",
    "ProviderUnavailable",
    "RelyingParty",
    "TokenIdentity",
    "TokenValidator",
    "from_discovery",
    "preset",
    "settings_from_metadata",
    "token_hash",
]
