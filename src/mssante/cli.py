"""The `mssante` command line: operate, administer and try an MSSanté operator.

Every command that needs an operator takes `--config FILE` or the `MSSANTE_CONFIG`
variable. Domain errors are printed as one clear line and exit with status 1; usage and
configuration errors exit with status 2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from mssante import __version__
from mssante.config import Config, ConfigError, config_path_from_env, load_config
from mssante.domain.errors import DomainError
from mssante.domain.identifiers import check_identifier
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(code)


def domain_errors(func: F) -> F:
    """Turn domain and configuration errors into one readable line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                err_console.print(f"[red]{exc.path or 'config'}:[/red] {problem}", highlight=False)
            sys.exit(2)
        except DomainError as exc:
            _fail(f"{exc.message} [{exc.code}]")

    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> Config:
    path = config_path_from_env(ctx.obj.get("config"))
    if path is None:
        _fail("no configuration: pass --config FILE or set MSSANTE_CONFIG", 2)
    assert path is not None
    return load_config(path)


def _services(ctx: click.Context) -> Any:
    from mssante.runtime import Services

    services = Services(_config(ctx))
    services.migrate()
    return services


def setup_logging(level: str, file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if file is not None:
        handlers.append(logging.FileHandler(file))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Operator configuration (TOML)."
)
@click.version_option(__version__, prog_name="mssante")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """mssante: an open-source operator platform for MSSanté."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


# -- configuration ---------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Report every error of FILE at once, each with its key path."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]{file}:[/red] {problem}", highlight=False)
        err_console.print(f"{len(exc.problems)} problem(s) found")
        sys.exit(1)
    missing = [
        f"tls.{name}: file not found: {path}"
        for name, path in (
            ("cert_file", cfg.tls.cert_file),
            ("key_file", cfg.tls.key_file),
            ("trust_anchors", cfg.tls.trust_anchors),
        )
        if not path.exists()
    ]
    for problem in missing:
        err_console.print(f"[yellow]{file}:[/yellow] {problem}", highlight=False)
    console.print(f"{file}: OK ({', '.join(cfg.operator.domains)})")


@main.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domain", required=True, help="Hosted MSSanté domain, e.g. ch-exemple.mssante.fr")
@click.option("--hostname", help="Public SMTP host name (default mx.DOMAIN).")
@click.option("--name", default="Opérateur MSSanté", help="Operator name.")
@domain_errors
def init(directory: Path, domain: str, hostname: str | None, name: str) -> None:
    """Write a ready configuration and data directory for one operator (SQLite).

    Until the IGC-Santé certificate is installed, a local CA and certificate are created so
    that `mssante serve` starts; replace tls/operator.pem, tls/operator.key and
    tls/trust-anchors.pem with the IGC-Santé material for production.
    """
    from mssante.domain.trust import is_mssante_domain
    from mssante.pki import DemoCA, DistinguishedName
    from mssante.testing.trust_space import write_operator_config

    domain = domain.strip().lower()
    if not is_mssante_domain(domain):
        _fail(f"{domain} is not a subdomain of mssante.fr (R11)", 2)
    directory = directory.resolve()
    config_file = directory / "mssante.toml"
    if config_file.exists():
        _fail(f"{config_file} already exists; nothing written", 2)
    hostname = hostname or f"mx.{domain}"
    tls = directory / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca = DemoCA.create(f"{domain} local CA (replace with IGC-Sante)")
    ca.write_cert(tls / "trust-anchors.pem")
    ca.issue(
        DistinguishedName(hostname, organization=name),
        dns_names=(hostname, "localhost"),
        ip_addresses=("127.0.0.1",),
    ).write(tls / "operator.pem", tls / "operator.key", chain=True)
    write_operator_config(
        config_file,
        data_dir=directory / "data",
        domain=domain,
        hostname=hostname,
        cert_file=tls / "operator.pem",
        key_file=tls / "operator.key",
        trust_anchors=tls / "trust-anchors.pem",
        submission_port=587,
        inbound_port=25,
        use_mx=True,
        name=name,
    )
    console.print(f"Configuration written to {config_file}")
    console.print(f"Next: mssante --config {config_file} trust-list load listeblanchemssante.xml")
    console.print(f"      mssante --config {config_file} serve")


@main.command("migrate")
@click.pass_context
@domain_errors
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    services = _services(ctx)
    services.close()
    console.print("database schema is up to date")


@main.command("serve")
@click.pass_context
@domain_errors
def serve(ctx: click.Context) -> None:
    """Run the operator: SMTP submission, SMTP inbound and the relay worker."""
    from mssante.runtime import Operator

    cfg = _config(ctx)
    setup_logging(cfg.logging.level, cfg.logging.file)

    async def run() -> None:
        operator = Operator(cfg)
        await operator.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if operator.submission:
            print(f"submission {operator.submission.host}:{operator.submission.port}", flush=True)
        if operator.inbound:
            print(f"inbound {operator.inbound.host}:{operator.inbound.port}", flush=True)
        await stop.wait()
        await operator.stop()

    asyncio.run(run())


# -- identifiers -----------------------------------------------------------------------


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


@main.group("trust-list")
def trust_group() -> None:
    """The ANS white list of the trust space (R1–R4)."""


@trust_group.command("load")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--checksum", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.pass_context
@domain_errors
def trust_load(ctx: click.Context, file: Path, checksum: Path | None) -> None:
    """Install FILE as the white list in force; a bad list never replaces the current one."""
    services = _services(ctx)
    try:
        status = services.trust.load(
            file.read_bytes(), checksum.read_text() if checksum else None, source=str(file)
        )
    finally:
        services.close()
    console.print(
        f"white list loaded: {status.domain_count} entries, {status.distinct_domains} domains,"
        f" generated {status.generated_at:%Y-%m-%d %H:%M:%S}Z, generation {status.generation}"
        if status.generated_at
        else f"white list loaded: {status.domain_count} entries"
    )
    for warning in status.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@trust_group.command("status")
@click.pass_context
@domain_errors
def trust_status(ctx: click.Context) -> None:
    """Show the white list in force."""
    services = _services(ctx)
    status = services.trust.status()
    services.close()
    if status is None:
        _fail("no white list loaded: run `mssante trust-list load FILE`")
        return
    console.print(
        f"generation {status.generation}: {status.domain_count} entries,"
        f" {status.distinct_domains} domains, sha256 {status.sha256},"
        f" source {status.source}, loaded {status.loaded_at}"
    )


# -- structures, professionals, mailboxes ----------------------------------------------


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


@mailbox_group.command("set-password")
@click.argument("login")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.pass_context
@domain_errors
def mailbox_set_password(ctx: click.Context, login: str, password: str) -> None:
    services = _services(ctx)
    try:
        services.mailboxes.set_password(login, password)
    finally:
        services.close()
    console.print(f"password of {login} changed")


# -- traces and queue ------------------------------------------------------------------


@main.group("trace")
def trace_group() -> None:
    """Trace events (R63)."""


@trace_group.command("list")
@click.option("--mailbox")
@click.option("--action")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
@domain_errors
def trace_list(ctx: click.Context, mailbox: str | None, action: str | None, limit: int) -> None:
    from mssante.services.traces import list_events

    services = _services(ctx)
    with services.db.read() as conn:
        events = list_events(conn, mailbox=mailbox, action=action, limit=limit)
    services.close()
    table = Table("time (UTC)", "action", "outcome", "mailbox", "peer", "detail")
    for e in events:
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.action,
            e.outcome,
            e.mailbox or "",
            e.peer or "",
            e.detail or "",
        )
    console.print(table)


@main.command("queue")
@click.pass_context
@domain_errors
def queue_status(ctx: click.Context) -> None:
    """How many deliveries wait in the outbound queue."""
    services = _services(ctx)
    pending = services.queue.pending()
    services.close()
    console.print(f"{pending} deliveries queued")


def _register_demo() -> None:
    from mssante.demo import demo_command

    main.add_command(demo_command)


_register_demo()

if __name__ == "__main__":  # pragma: no cover
    main()
