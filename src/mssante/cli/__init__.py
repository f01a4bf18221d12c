"""The `mssante` command line: operate, administer and try an MSSanté operator.

Every command that needs an operator takes `--config FILE` or the `MSSANTE_CONFIG`
variable. Domain errors are printed as one clear line and exit with status 1; usage and
configuration errors exit with status 2.
"""

from mssante.cli import (  # noqa: F401 - they register their commands
    admin,
    annuaire,
    annuaire_lookup,
    annuaire_publish,
    annuaire_search,
    documents,
    machines,
    operator,
    send,
    users,
)
from mssante.cli.common import main, setup_logging

__all__ = ["main", "setup_logging"]
