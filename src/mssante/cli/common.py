"""Shared pieces of the `mssante` command line: the root group, errors, configuration.

Every command that needs an operator takes `--config FILE` or the `MSSANTE_CONFIG`
variable. Domain errors are printed as one clear line and exit with status 1; usage and
configuration errors exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from mssante import __version__
from mssante.config import Config, ConfigError, config_path_from_env, load_config
from mssante.domain.errors import DomainError

console = Console()
# Errors stay on one line (no wrapping at 80 columns when stderr is not a terminal).
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    sys.exit(code)


def domain_errors(func: F) -> F:
    """Turn domain and configuration errors into one readable line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                err_console.print(
                    f"[red]{escape(str(exc.path or 'config'))}:[/red] {escape(problem)}",
                    highlight=False,
                )
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
