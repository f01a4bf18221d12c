"""Machine credentials of APP mailboxes (R18): client certificates and OAuth2 clients."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.admin import mailbox_group
from mssante.cli.common import _fail, _services, console, domain_errors, err_console
from mssante.services.machine_credentials import MachineCredential


def _as_dict(c: MachineCredential) -> dict[str, object]:
    return {
        "id": c.id,
        "mailbox": c.mailbox,
        "kind": c.kind,
        "client_id": c.client_id,
        "fingerprint_sha256": c.fingerprint_sha256,
        "subject_dn": c.subject_dn,
        "description": c.description,
        "created_at": c.created_at.isoformat(),
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
    }


@mailbox_group.command("bind-certificate")
@click.argument("app_address")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", help="What the certificate is for (shown in listings).")
@click.pass_context
@domain_errors
def bind_certificate(
    ctx: click.Context, app_address: str, cert_file: Path, description: str | None
) -> None:
    """Bind the client certificate CERT_FILE (PEM or DER) to the APP mailbox APP_ADDRESS.

    The software presenting it over TLS then logs in with SMTP AUTH EXTERNAL.
    """
    try:
        data = cert_file.read_bytes()
    except OSError as exc:
        _fail(f"{cert_file}: {exc.strerror}", 2)
        return
    services = _services(ctx)
    try:
        fingerprint = services.machine_credentials.bind_certificate(
            app_address, data, actor="cli", description=description
        )
    finally:
        services.close()
    console.print(f"certificate bound to {escape(app_address)}", highlight=False)
    console.print(f"SHA-256 fingerprint: {fingerprint}", highlight=False)


@mailbox_group.command("create-client")
@click.argument("app_address")
@click.option("--description", help="Which software uses it (shown in listings).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@domain_errors
def create_client(
    ctx: click.Context, app_address: str, description: str | None, as_json: bool
) -> None:
    """Create OAuth2 client credentials for the APP mailbox APP_ADDRESS (HTTP API).

    The secret is printed once and cannot be shown again: only its hash is kept.
    """
    services = _services(ctx)
    try:
        client_id, secret = services.machine_credentials.create_client(
            app_address, actor="cli", description=description
        )
    finally:
        services.close()
    err_console.print(
        "[yellow]warning:[/yellow] the client secret is shown only now; store it in the "
        "software's secret store. Lost? Revoke it and create another client.",
        highlight=False,
    )
    if as_json:
        print(json.dumps({"client_id": client_id, "client_secret": secret}))
        return
    print(f"client_id:     {client_id}")
    print(f"client_secret: {secret}")


@mailbox_group.command("credentials")
@click.argument("app_address")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@domain_errors
def list_credentials(ctx: click.Context, app_address: str, as_json: bool) -> None:
    """List the certificates and OAuth2 clients of APP_ADDRESS (revoked ones included)."""
    services = _services(ctx)
    try:
        found = services.machine_credentials.list(app_address)
    finally:
        services.close()
    if as_json:
        print(json.dumps([_as_dict(c) for c in found], ensure_ascii=False))
        return
    table = Table("id", "kind", "client id / certificate", "description", "created", "status")
    for c in found:
        what = c.client_id or f"{c.subject_dn}\nsha256 {c.fingerprint_sha256}"
        status = f"revoked {c.revoked_at:%Y-%m-%d %H:%M}" if c.revoked_at else "active"
        table.add_row(
            str(c.id),
            c.kind,
            escape(what),
            escape(c.description or ""),
            f"{c.created_at:%Y-%m-%d %H:%M}",
            status,
        )
    console.print(table)


@mailbox_group.command("revoke-credential")
@click.argument("reference")
@click.pass_context
@domain_errors
def revoke_credential(ctx: click.Context, reference: str) -> None:
    """Revoke a machine credential by id, client_id or certificate SHA-256 fingerprint.

    Logins with it stop at once, and so do the access tokens already issued to it.
    """
    services = _services(ctx)
    try:
        credential = services.machine_credentials.revoke(reference, actor="cli")
    finally:
        services.close()
    what = credential.client_id or credential.fingerprint_sha256
    console.print(
        f"{credential.kind} {escape(what or '')} of {escape(credential.mailbox)} revoked",
        highlight=False,
    )
