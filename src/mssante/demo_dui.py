"""The integration API in `mssante demo` (issue 7): client credentials and the EHPAD DUI.

Each APP BAL of the demo gets OAuth2 client credentials (R18) so that software can use the
HTTP API as that BAL; the state file lists them under the account's ``api`` key
(``client_id``, ``client_secret``, ``client_secret_file``). ``mssante demo --dui`` then runs
``examples/ehpad_dui.py``: the EHPAD's DUI sends a DLU to the hospital through the API and
receives the hospital's reply through a webhook.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from mssante.domain.mailboxes import MailboxType
from mssante.testing.trust_space import LocalTrustSpace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ehpad_dui.py"


def create_api_clients(space: LocalTrustSpace) -> dict[str, dict[str, str]]:
    """OAuth2 client credentials for every APP BAL of the demo: address → ``api`` entry."""
    clients: dict[str, dict[str, str]] = {}
    for local in space.operators:
        op = local.operator
        assert op is not None
        boxes = op.services.mailboxes.list_mailboxes()
        for box in boxes:
            if box.type is not MailboxType.APP:
                continue
            client_id, secret = op.services.machine_credentials.create_client(
                box.address, actor="demo", description="mssante demo (API)"
            )
            secret_file = space.root / f"{box.address}.client-secret"
            secret_file.write_text(secret + "\n", encoding="utf-8")
            secret_file.chmod(0o600)
            clients[box.address] = {
                "client_id": client_id,
                "client_secret": secret,
                "client_secret_file": str(secret_file),
            }
    return clients


def add_to_state(state: dict[str, Any], clients: dict[str, dict[str, str]]) -> None:
    """Add ``api`` to the APP accounts of the state file (existing keys are left alone)."""
    for op in state["operators"]:
        for account in op["accounts"]:
            if account["address"] in clients:
                account["api"] = clients[account["address"]]


def summary_lines(state: dict[str, Any], state_file: Path | None) -> list[str]:
    lines = ["", "API d'intégration (client credentials des BAL applicatives) :"]
    for op in state["operators"]:
        for account in op["accounts"]:
            api = account.get("api")
            if api and op.get("http"):
                lines.append(f"  mssante send --api {op['http']} --ca-file {state['ca_file']} \\")
                lines.append(
                    f"      --client-id {api['client_id']}"
                    f" --client-secret-file {api['client_secret_file']} \\"
                )
                lines.append(f"      --from {account['address']} --to … --subject … --text …")
    if EXAMPLE.is_file():
        where = f" --state {state_file}" if state_file else ""
        lines.append(f"  Exemple DUI d'EHPAD : python {EXAMPLE}{where}  (ou mssante demo --dui)")
    return lines


async def run_example(state_file: Path) -> int:
    """Run examples/ehpad_dui.py against the running demo; its exit status."""
    if not EXAMPLE.is_file():
        print(f"Exemple introuvable : {EXAMPLE} (installation sans les sources).", flush=True)
        return 1
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "--state", str(state_file)
    )
    return await process.wait()
