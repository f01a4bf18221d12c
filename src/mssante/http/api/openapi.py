"""The published API description: OpenAPI 3.1 at ``/api/openapi.json`` and ``/api/docs``.

`setup_openapi` is called by `create_app`. It

* serves the schema at ``/api/openapi.json`` (and ``/openapi.json``, an alias kept for old
  clients, itself not in the schema);
* adds the models used only inside ``openapi_extra`` request bodies (``SendRequest``) and
  the ``Problem`` schema to the components, and announces error answers as
  ``application/problem+json`` only (RFC 9457), never as plain JSON;
* serves ``/api/docs``: a self-contained HTML page (no CDN, no script) listing every
  operation with its parameters and answers, generated from the same schema.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from mssante.http.api.models import Problem, SendRequest
from mssante.http.api.problems import PROBLEM_MEDIA_TYPE

OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
_PROBLEM_REF = "#/components/schemas/Problem"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _add_models(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, SendRequest):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in found.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, found)


def _problem_only(schema: dict[str, Any]) -> None:
    """Error answers that declare the problem media type keep only that one."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_MEDIA_TYPE in content:
                    content.pop("application/json", None)
                    content[PROBLEM_MEDIA_TYPE] = {"schema": {"$ref": _PROBLEM_REF}}


def build_schema(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary="API d'intégration MSSanté pour les logiciels (DUI, LPS)",
        description=(
            "Envoi et lecture de messages MSSanté, documents IHE XDM, accusés de lecture, "
            "statuts de remise et webhooks. Guide : docs/api.md. Erreurs : RFC 9457 "
            "(application/problem+json), `type` = https://mssante.fr/problems/<slug>."
        ),
        routes=app.routes,
    )
    _add_models(schema)
    _problem_only(schema)
    return schema


def _docs_page(schema: dict[str, Any]) -> str:
    esc = html.escape
    rows: list[str] = []
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            params = ", ".join(
                f"{esc(p.get('name', ''))} ({esc(p.get('in', ''))})"
                for p in op.get("parameters", [])
            )
            body = ", ".join(esc(k) for k in op.get("requestBody", {}).get("content", {}))
            answers = ", ".join(esc(str(code)) for code in op.get("responses", {}))
            rows.append(
                f"<tr><td><code>{esc(method.upper())}</code></td><td><code>{esc(path)}</code>"
                f"</td><td>{esc(op.get('summary', ''))}</td><td>{params}</td><td>{body}</td>"
                f"<td>{answers}</td></tr>"
            )
    info = schema.get("info", {})
    return (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        f"<title>{esc(info.get('title', 'API'))} — documentation</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .5em;"
        "vertical-align:top;text-align:left}code{white-space:nowrap}</style></head><body>"
        f"<h1>{esc(info.get('title', 'API'))} {esc(str(info.get('version', '')))}</h1>"
        f"<p>{esc(info.get('description', ''))}</p>"
        f"<p>Schéma OpenAPI {esc(str(schema.get('openapi', '')))} : "
        f'<a href="{OPENAPI_URL}">{OPENAPI_URL}</a>. Authentification : '
        "<code>Authorization: Bearer &lt;jeton&gt;</code>.</p>"
        "<table><thead><tr><th>Méthode</th><th>Chemin</th><th>Résumé</th><th>Paramètres</th>"
        "<th>Corps</th><th>Réponses</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>"
    )


def setup_openapi(app: FastAPI) -> None:
    """Install the schema builder and the two documentation routes on `app`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_alias(request: Request) -> JSONResponse:
        return JSONResponse(openapi())

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(
            _docs_page(openapi()),
            headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"},
        )
