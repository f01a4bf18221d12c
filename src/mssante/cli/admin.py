"""Administration commands: identifiers, structures, professionals, mailboxes."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from mssante.cli.common import _fail, _services, console, domain_errors, main
from mssante.domain.identifiers import check_identifier
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType


@main.group("identifier")
def identifier_group() -> None:
    """French health identifiers (RPPS, ADELI, FINESS, SIRET, INS…)."""


@identifier_group.command("check")
@click.argument("value")
@click.option("--type", "type_", help="RPPS, ADELI, IDNPS, FINESS, SIREN, SIRET, IDNST, NIR…")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def identifier_check(value: str, type_: str | None, as_json: bool) -> None:
    """Say which identifier VALUE is and whether its key is valid (exit 0 valid, 1 invalid)."""
    try:
        result = check_identifier(value, type_)
    except ValueError as exc:
        _fail(str(exc), 2)
        return
    if as_json:
        print(
            json.dumps(
                {
                    "type": result.type,
                    "value": result.value,
                    "valid": result.valid,
                    "reason": result.reason,
                    "ambiguous": result.ambiguous,
                },
                ensure_ascii=False,
            )
        )
    else:
        mark = "[green]valid[/green]" if result.valid else "[red]invalid[/red]"
        console.print(f"{result.type} {result.value}: {mark} — {result.reason}", highlight=False)
    sys.exit(0 if result.valid else 1)


# -- white list ------------------------------------------------------------------------


@main.group("structure")
def structure_group() -> None:
    """Structures (FINESS, SIRET…) that hold ORG and APP mailboxes."""


@structure_group.command("create")
@click.option("--id-nat-struct", required=True, help="1+FINESS, 3+SIRET, …")
@click.option("--name", required=True)
@click.pass_context
@domain_errors
def structure_create(ctx: click.Context, id_nat_struct: str, name: str) -> None:
    services = _services(ctx)
    try:
        value = services.mailboxes.create_structure(id_nat_struct, name)
    finally:
        services.close()
    console.print(f"structure {value} created")


@structure_group.command("list")
@click.pass_context
@domain_errors
def structure_list(ctx: click.Context) -> None:
    services = _services(ctx)
    rows = services.mailboxes.list_structures()
    services.close()
    table = Table("idNat_Struct", "name")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@main.group("professional")
def professional_group() -> None:
    """Professionals (idNat_PS = 8 + RPPS) who hold PER mailboxes."""


@professional_group.command("create")
@click.option("--rpps", help="RPPS (11 digits); or give --id-nat-ps.")
@click.option("--id-nat-ps")
@click.option("--family-name", required=True)
@click.option("--given-name", required=True)
@click.option("--profession", default="")
@click.pass_context
@domain_errors
def professional_create(
    ctx: click.Context,
    rpps: str | None,
    id_nat_ps: str | None,
    family_name: str,
    given_name: str,
    profession: str,
) -> None:
    if bool(rpps) == bool(id_nat_ps):
        _fail("give exactly one of --rpps or --id-nat-ps", 2)
    value = id_nat_ps or f"8{rpps}"
    services = _services(ctx)
    try:
        value = services.mailboxes.create_professional(value, family_name, given_name, profession)
    finally:
        services.close()
    console.print(f"professional {value} created")


@professional_group.command("list")
@click.pass_context
@domain_errors
def professional_list(ctx: click.Context) -> None:
    services = _services(ctx)
    rows = services.mailboxes.list_professionals()
    services.close()
    table = Table("idNat_PS", "family name", "given name", "profession")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@main.group("mailbox")
def mailbox_group() -> None:
    """Mailboxes (BAL) of the types PER, ORG, APP, CAB."""


@mailbox_group.command("create")
@click.argument("address")
@click.option("--type", "type_", type=click.Choice([t.value for t in MailboxType]), required=True)
@click.option("--rpps", help="PER: the holder's RPPS.")
@click.option("--id-nat-ps", help="PER: the holder's idNat_PS.")
@click.option("--id-nat-struct", help="ORG, APP, CAB: the structure.")
@click.option("--responsible", help="ORG, APP: the responsible person.")
@click.option("--description")
@click.option("--service")
@click.option("--list-rouge", is_flag=True, help="Never published (R49).")
@click.option("--password", help="Login password (prompted when --ask-password).")
@click.option("--ask-password", is_flag=True)
@click.pass_context
@domain_errors
def mailbox_create(
    ctx: click.Context,
    address: str,
    type_: str,
    rpps: str | None,
    id_nat_ps: str | None,
    id_nat_struct: str | None,
    responsible: str | None,
    description: str | None,
    service: str | None,
    list_rouge: bool,
    password: str | None,
    ask_password: bool,
) -> None:
    if ask_password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    spec = MailboxSpec(
        address=address,
        type=MailboxType(type_),
        id_nat_ps=id_nat_ps or (f"8{rpps}" if rpps else None),
        id_nat_struct=id_nat_struct,
        responsible=responsible,
        description=description,
        service=service,
        list_rouge=list_rouge,
    )
    services = _services(ctx)
    try:
        box = services.mailboxes.create_mailbox(spec, password=password)
    finally:
        services.close()
    console.print(f"mailbox {box.address} ({box.type}) created")


@mailbox_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@domain_errors
def mailbox_list(ctx: click.Context, as_json: bool) -> None:
    services = _services(ctx)
    boxes = services.mailboxes.list_mailboxes()
    services.close()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "address": b.address,
                        "type": b.type.value,
                        "status": b.status.value,
                        "id_nat_ps": b.id_nat_ps,
                        "id_nat_struct": b.id_nat_struct,
                        "list_rouge": b.list_rouge,
                    }
                    for b in boxes
                ],
                ensure_ascii=False,
            )
        )
        return
    table = Table("address", "type", "status", "holder", "red list")
    for b in boxes:
        table.add_row(
            b.address,
            b.type.value,
            b.status.value,
            b.id_nat_ps or b.id_nat_struct or "",
            "yes" if b.list_rouge else "",
        )
    console.print(table)


def _status_command(name: str, target: MailboxStatus, help_text: str) -> None:
    @mailbox_group.command(name, help=help_text)
    @click.argument("address")
    @click.pass_context
    @domain_errors
    def command(ctx: click.Context, address: str) -> None:
        services = _services(ctx)
        try:
            box = services.mailboxes.set_status(address, target)
        finally:
            services.close()
        console.print(f"mailbox {box.address} is now {box.status.value}")


_status_command("suspend", MailboxStatus.SUSPENDED, "Suspend a mailbox (mail deferred 4.2.1).")
_status_command("reactivate", MailboxStatus.ACTIVE, "Reactivate a suspended mailbox.")
_status_command("close", MailboxStatus.CLOSED, "Close a mailbox for good (mail refused 5.2.1).")


@mailbox_group.command("add-member")
@click.argument("address")
@click.argument("login")
@click.pass_context
@domain_errors
def mailbox_add_member(ctx: click.Context, address: str, login: str) -> None:
    """Let LOGIN act on the ORG (or CAB) mailbox ADDRESS."""
    services = _services(ctx)
    try:
        services.mailboxes.add_member(address, login)
    finally:
        services.close()
    console.print(f"{login} is now a member of {address}")


@mailbox_group.command("remove-member")
@click.argument("address")
@click.argument("login")
@click.pass_context
@domain_errors
def mailbox_remove_member(ctx: click.Context, address: str, login: str) -> None:
    """Withdraw LOGIN from the ORG mailbox ADDRESS (open sessions lose access at once)."""
    services = _services(ctx)
    try:
        services.mailboxes.remove_member(address, login)
    finally:
        services.close()
    console.print(f"{login} is no longer a member of {address}")


@mailbox_group.command("set-password")
@click.argument("login")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.pass_context
@domain_errors
def mailbox_set_password(ctx: click.Context, login: str, password: str) -> None:
    services = _services(ctx)
    try:
        services.auth.set_password(login, password, actor="cli")  # applies the policy
    finally:
        services.close()
    console.print(f"password of {login} changed")


# -- traces and queue ------------------------------------------------------------------
