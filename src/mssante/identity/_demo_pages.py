"""HTML of the demo identity provider (French, every value escaped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Protocol

DEMO_BANNER = "Fournisseur d'identité de DÉMONSTRATION — ne pas utiliser en production"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; color: #1e1e1e; }
.banner { background: #b00020; color: #fff; padding: .8rem 1rem; font-weight: bold;
  border-radius: .3rem; }
fieldset { border: 1px solid #ccc; border-radius: .3rem; margin: 1rem 0; }
label { display: block; padding: .4rem 0; }
.id { color: #555; font-family: monospace; }
button { padding: .5rem 1rem; margin-right: .5rem; }
"""


class Professional(Protocol):
    @property
    def id_nat_ps(self) -> str: ...
    @property
    def given_name(self) -> str: ...
    @property
    def family_name(self) -> str: ...
    @property
    def profession(self) -> str: ...


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<p class="banner" role="alert">{escape(DEMO_BANNER)}</p>\n{body}\n</body>\n</html>\n'
    )


def login_page(
    client_id: str, hidden: Mapping[str, str], professionals: Iterable[Professional]
) -> str:
    """The "choose a professional" page; the form posts back to ``/auth``."""
    fields = "\n".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    choices = []
    for i, p in enumerate(professionals):
        checked = " checked" if i == 0 else ""
        choices.append(
            f'<label><input type="radio" name="professional" value="{escape(p.id_nat_ps)}"'
            f"{checked}> {escape(p.given_name)} {escape(p.family_name.upper())}, "
            f'{escape(p.profession)} <span class="id">({escape(p.id_nat_ps)})</span></label>'
        )
    body = (
        "<h1>Connexion Pro Santé Connect (simulation)</h1>\n"
        f"<p>L'application <strong>{escape(client_id)}</strong> demande à vous identifier. "
        "Aucune carte CPS ni e-CPS n'est demandée : choisissez un professionnel fictif.</p>\n"
        '<form method="post" action="auth">\n'
        f"{fields}\n<fieldset><legend>Professionnel de santé</legend>\n"
        + "\n".join(choices)
        + '\n</fieldset>\n<button type="submit" name="action" value="login">Se connecter</button>'
        '<button type="submit" name="action" value="deny">Refuser</button>\n</form>'
    )
    return _page("Connexion — démonstration", body)


def error_page(message: str) -> str:
    body = f"<h1>Requête refusée</h1>\n<p>{escape(message)}</p>"
    return _page("Erreur — démonstration", body)
