"""Login commands: staff without a CPS card, passwords, TOTP second factor, locks (R62).

The responsible person of a structure enrols its staff here until the web application
exists: `user create-staff`, then `user enroll-totp` (the code goes after the password in
the mail client's password field).
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.common import _fail, _services, console, domain_errors, main


def _actor() -> str:
    """Who runs the command, for the traces (R63)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _ask_password(password: str | None) -> str:
    if password is not None:
        return password
    value: str = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    return value


@main.group("user")
def user_group() -> None:
    """Logins: staff of ORG mailboxes (password + TOTP), passwords, locks."""


@user_group.command("create-staff")
@click.argument("login")
@click.option("--org", "org", required=True, help="The ORG (or CAB) mailbox they act on.")
@click.option("--display-name", required=True, help="First and last name.")
@click.option(
    "--password",
    help="Initial password (prompted when absent; avoid it on shared machines: shell history).",
)
@click.pass_context
@domain_errors
def user_create_staff(
    ctx: click.Context, login: str, org: str, display_name: str, password: str | None
) -> None:
    """Create LOGIN (e.g. prenom.nom@structure.fr), a staff member of the mailbox ORG."""
    services = _services(ctx)
    try:
        secret = _ask_password(password)
        principal = services.auth.create_staff(
            login, display_name, secret, org_address=org, actor=_actor()
        )
    finally:
        services.close()
    console.print(
        f"staff login {escape(principal.login)} created, member of {escape(org.lower())}; "
        f"next: mssante user enroll-totp {escape(principal.login)}",
        highlight=False,
    )


@user_group.command("set-password")
@click.argument("login")
@click.option("--password", help="New password (prompted when absent).")
@click.pass_context
@domain_errors
def user_set_password(ctx: click.Context, login: str, password: str | None) -> None:
    """Give LOGIN a new password, checked against the password policy ([auth])."""
    services = _services(ctx)
    try:
        services.auth.set_password(login, _ask_password(password), actor=_actor())
    finally:
        services.close()
    console.print(f"password of {escape(login.lower())} changed", highlight=False)


@user_group.command("enroll-totp")
@click.argument("login")
@click.option("--replace", is_flag=True, help="Replace an existing secret (the old app stops).")
@click.pass_context
@domain_errors
def user_enroll_totp(ctx: click.Context, login: str, replace: bool) -> None:
    """Give LOGIN a TOTP second factor; print its secret and otpauth:// URI once."""
    services = _services(ctx)
    try:
        secret, uri = services.auth.enroll_totp(login, actor=_actor(), replace=replace)
    finally:
        services.close()
    # Printed once and never stored elsewhere in clear: hand it to the user directly.
    print(f"secret: {secret}")
    print(f"uri: {uri}")
    console.print(
        "Scan the URI (as a QR code) or type the secret in an authenticator app (RFC 6238, "
        "6 digits, 30 s). In the mail client, type the password immediately followed by "
        "the current 6-digit code.",
        highlight=False,
    )


@user_group.command("disable-totp")
@click.argument("login")
@click.pass_context
@domain_errors
def user_disable_totp(ctx: click.Context, login: str) -> None:
    """Remove the TOTP second factor of LOGIN (a lost phone; enrol again after)."""
    services = _services(ctx)
    try:
        services.auth.disable_totp(login, actor=_actor())
    finally:
        services.close()
    console.print(f"second factor of {escape(login.lower())} removed", highlight=False)


@user_group.command("unlock")
@click.argument("login", required=False)
@click.option("--source", help="Unlock a source address instead of a login.")
@click.pass_context
@domain_errors
def user_unlock(ctx: click.Context, login: str | None, source: str | None) -> None:
    """Forget the failed logins and lock of LOGIN, or of the address --source."""
    if (login is None) == (source is None):
        _fail("give a LOGIN or --source ADDRESS", 2)
    services = _services(ctx)
    try:
        found = services.auth.unlock(login=login, source=source, actor=_actor())
    finally:
        services.close()
    what = f"login {login.lower()}" if login else f"source {source}"
    console.print(
        f"{escape(what)} unlocked" if found else f"{escape(what)} had no failed logins",
        highlight=False,
    )


@user_group.command("list")
@click.option("--staff", "staff_only", is_flag=True, help="Only staff logins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@domain_errors
def user_list(ctx: click.Context, staff_only: bool, as_json: bool) -> None:
    """Logins with their kind, second factor, mailboxes and current lock."""
    services = _services(ctx)
    try:
        rows = services.auth.list_users(kinds=["staff"] if staff_only else None)
    finally:
        services.close()
    if as_json:
        data: list[dict[str, Any]] = [
            {
                "login": u.login,
                "kind": u.kind,
                "display_name": u.display_name,
                "status": u.status,
                "totp": u.totp_enrolled,
                "password": u.password_set,
                "member_of": list(u.member_of),
                "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            }
            for u in rows
        ]
        print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("login", "kind", "name", "status", "TOTP", "member of", "locked until")
    for u in rows:
        table.add_row(
            u.login,
            u.kind,
            u.display_name,
            u.status,
            "yes" if u.totp_enrolled else "",
            ", ".join(u.member_of),
            u.locked_until.isoformat(timespec="seconds") if u.locked_until else "",
        )
    console.print(table)
