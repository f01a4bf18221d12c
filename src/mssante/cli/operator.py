"""Operating commands: configuration, init, serve, white list, traces, queue, demo."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from mssante.cli.common import (
    _config,
    _fail,
    _services,
    console,
    domain_errors,
    err_console,
    main,
    setup_logging,
)
from mssante.config import ConfigError, load_config


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
            err_console.print(f"[red]{escape(str(file))}:[/red] {escape(problem)}", highlight=False)
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
        err_console.print(
            f"[yellow]{escape(str(file))}:[/yellow] {escape(problem)}", highlight=False
        )
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
        http_port=8443,
        imap_port=143,
        imaps_port=993,
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


@main.group("trace")
def trace_group() -> None:
    """Trace events (R63)."""


@trace_group.command("list")
@click.option("--mailbox")
@click.option("--action")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@domain_errors
def trace_list(
    ctx: click.Context, mailbox: str | None, action: str | None, limit: int, as_json: bool
) -> None:
    """Recent trace events, newest first."""
    from mssante.services.traces import list_events

    services = _services(ctx)
    with services.db.read() as conn:
        events = list_events(conn, mailbox=mailbox, action=action, limit=limit)
    services.close()
    if as_json:
        for e in events:
            print(
                json.dumps(
                    {
                        "at": e.at.isoformat(),
                        "action": e.action,
                        "outcome": e.outcome,
                        "mailbox": e.mailbox,
                        "actor": e.actor,
                        "peer": e.peer,
                        "message_id": e.message_id,
                        "size": e.size,
                        "detail": e.detail,
                    },
                    ensure_ascii=False,
                )
            )
        return
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


@main.command("demo", context_settings={"ignore_unknown_options": False})
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the demo's addresses, ports and passwords as JSON here.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's data here (default: a temporary directory).",
)
@click.option("--no-flows", is_flag=True, help="Do not send the six sample messages.")
@click.option(
    "--dui",
    is_flag=True,
    help="Then run examples/ehpad_dui.py: a DUI sends a DLU through the HTTP API (issue 7).",
)
def demo(state_file: Path | None, data_dir: Path | None, no_flows: bool, dui: bool) -> None:
    """Start a local MSSanté trust space with two operators and sample users."""
    from mssante.demo import start_demo  # imported here: the other commands start faster

    start_demo(state_file, data_dir, no_flows, dui=dui)
