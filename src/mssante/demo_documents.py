"""The documents of `mssante demo` (issue 6): two flows carry real IHE XDM packages.

Flow 1 (the EHPAD) sends its fiche de liaison d'urgence (DLU-EHPAD-FLUDT) and flow 6 (the
hospital) its lettre de liaison de sortie (LDL-SES). The ANS examples are used when the shared
data sits beside the checkout (``MSSANTE_SHARED_DATA``, else ``../shared/data`` from the
current directory); otherwise the two synthetic documents shipped in ``mssante/data/cda/``
(a fictitious patient with a test INS) are. The receiving side reads the packages back from
the recipients' stores, as a mail client of the trust space would.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from mssante.services.documents import (
    SenderIdentity,
    compose_document_message,
    read_document_message,
)
from mssante.testing.trust_space import LocalTrustSpace

NIL = "MSSANTE-DEMO"  # X-MSS-NIL of the demo (a real product has its convergence reference)
_DOCUMENTS = {  # flow index → (shared example, synthetic document, use case)
    0: ("DLU-EHPAD-FLUDT_2022.01.xml", "DLU-EHPAD-FLUDT-DEMO.xml", None),
    5: ("LDL-SES_2022.01.xml", "LDL-SES-DEMO.xml", "hopital-lettre-liaison-sortie"),
}


def shared_data() -> Path | None:
    """The shared reference data beside the checkout, when there is one."""
    candidate = Path(os.environ.get("MSSANTE_SHARED_DATA") or Path.cwd() / ".." / "shared" / "data")
    return candidate.resolve() if (candidate / "cda" / "examples").is_dir() else None


def _document(shared: str, synthetic: str) -> tuple[bytes, str]:
    root = shared_data()
    if root is not None and (root / "cda" / "examples" / shared).is_file():
        return (root / "cda" / "examples" / shared).read_bytes(), f"exemple ANS {shared}"
    data = resources.files("mssante.data").joinpath("cda", synthetic).read_bytes()
    return data, f"document synthétique {synthetic}"


def sender_identity(
    label: str, rpps: str | None, structure: tuple[str, str] | None
) -> SenderIdentity:
    """The XDS author of a demo actor: a professional (idNat_PS) or a structure."""
    if rpps:
        given, family = label.split(",")[0].split()[-2:]
        return SenderIdentity(id_nat_ps="8" + rpps, family=family, given=given)
    assert structure is not None
    return SenderIdentity(id_nat_struct=structure[0], organisation=structure[1])


def document_message(
    index: int, sender: str, identity: SenderIdentity, recipients: tuple[str, ...], body: str
) -> tuple[bytes, dict[str, Any]] | None:
    """The document message of flow `index` (0-based), with what the state file records."""
    if index not in _DOCUMENTS:
        return None
    shared, synthetic, use_case = _DOCUMENTS[index]
    content, source = _document(shared, synthetic)
    message = compose_document_message(
        sender_address=sender,
        sender_identity=identity,
        recipients=list(recipients),
        documents=[(content, "text/xml")],
        nil=NIL,
        text_body=body,
        use_case=use_case,
        legal_policy="inform",
        gp=next((r for r in recipients if r.startswith("lea.dubois@")), None),
    )
    record = {
        "message_id": message.message_id,
        "subject": message.subject,
        "source": source,
        "documents": [{"type_code": d.type_code, "title": d.title} for d in message.documents],
        "notices": list(message.notices),
    }
    return message.data, record


def received_documents(space: LocalTrustSpace, flow: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents each recipient of a flow holds, read back from its store."""
    found: list[dict[str, Any]] = []
    if "message_id" not in flow:
        return found
    for rcpt in flow["to"]:
        op = space[rcpt.rpartition("@")[2]].operator
        assert op is not None
        stored = [m for m in op.services.store.list(rcpt) if m.message_id == flow["message_id"]]
        for item in stored[:1]:
            received = read_document_message(op.services.store.read(item))
            found += [
                {
                    "recipient": rcpt,
                    "type_code": d.type_code,
                    "patient_ins": received.patient_ins,
                    "title": d.title,
                    "problems": [p.code for p in received.problems],
                }
                for d in received.documents
            ]
    return found


def summary_lines(flow: dict[str, Any]) -> list[str]:
    """The summary lines of a flow's documents, sent and received (French)."""
    lines = [
        f"      document envoyé : {d['type_code']} « {d['title']} » ({flow.get('source', '')})"
        for d in flow.get("documents", [])
    ]
    lines += [
        f"      reçu par {d['recipient']} : {d['type_code']} « {d['title']} »,"
        f" patient INS {d['patient_ins']}"
        for d in flow.get("received_documents", [])
    ]
    return lines
