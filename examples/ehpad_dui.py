"""An EHPAD's DUI sends a DLU to the hospital through the mssante API, and gets the reply.

The "dossier usager informatisé" (DUI) of EHPAD Les Tilleuls owns the applicative BAL
``dui@ehpad-demo.mssante.fr``. When a resident is transferred to the emergency department it
sends the document de liaison d'urgence (DLU, LOINC 74207-2, a CDA R2 document) to the
hospital physician's BAL on the *other* operator, asks for a read receipt, and learns what
happens through a webhook: the status turns "read" when the physician opens it, and the
physician's reply arrives as a ``message.received`` event. Every webhook call is checked
with its HMAC signature before it is trusted.

The hospital side is played here too, as its own software would: with a Pro Santé Connect
token of the physician (from the demo's DEMO identity provider) it reads the message through
the hospital operator's API (which sends the read receipt) and replies.

Run against `make demo` (or ``mssante demo --state-file demo-state.json``)::

    python examples/ehpad_dui.py --state demo-state.json

or let the demo run it: ``mssante demo --dui``. Only ``mssante.client`` and the standard
library are used; a real DUI would keep its client secret out of any file it logs.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from mssante.client import (
    ApiError,
    Client,
    ClientError,
    Document,
    InvalidSignature,
    MessageDetail,
    Patient,
    WebhookEvent,
    parse_webhook,
)

DLU_TYPE_CODE = "74207-2"  # LOINC "Document de liaison d'urgence" (JDV_J07, CI-SIS DLU)
# The fictitious resident of the synthetic DLU shipped with mssante (a test INS).
RESIDENT = Patient(
    ins="238031305501250",
    ins_oid="1.2.250.1.213.1.4.10",
    family="EXEMPLE",
    given="JEANNE",
    birth_date="1938-03-12",
    sex="F",
)


class WebhookReceiver:
    """A small HTTP server on 127.0.0.1 that queues the webhook calls it receives."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                calls.put((dict(self.headers.items()), body))
                self.send_response(204)  # any 2xx: delivered
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/mssante"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _account(state: dict[str, Any], address_prefix: str, domain_part: str) -> tuple[dict, dict]:
    for op in state["operators"]:
        if domain_part not in op["domain"]:
            continue
        for account in op["accounts"]:
            if account["address"].startswith(address_prefix):
                return op, account
    sys.exit(f"compte {address_prefix}… introuvable dans le fichier d'état")


def _dlu() -> bytes:
    return resources.files("mssante.data").joinpath("cda", "DLU-EHPAD-FLUDT-DEMO.xml").read_bytes()


def _answers(message: MessageDetail, message_id: str) -> bool:
    """Whether `message` replies to `message_id` (In-Reply-To, RFC 5322 §3.6.4) and is not
    a report about it (a read receipt is a multipart/report, RFC 8098 §3)."""
    headers = {name.lower(): " ".join(values) for name, values in message.headers.items()}
    if "multipart/report" in headers.get("content-type", "").lower():
        return False
    return message_id in headers.get("in-reply-to", "")


def _event_line(event: WebhookEvent) -> str:
    if event.type == "message.status":
        status = event.status()
        states = ", ".join(f"{r.address} : {r.status}" for r in status.recipients)
        return f"message.status   envoi {status.id} — {states}"
    summary = event.summary()
    return f"message.received de {summary.from_} — « {summary.subject} »"


def hospital_reads_and_replies(state: dict[str, Any], message_id: str, deadline: float) -> None:
    """The hospital's software: the physician's PSC token, read (read receipt), reply."""
    op, physician = _account(state, "camille.martin@", "hopital")
    token_url = state["identity"]["token_url"]
    token = httpx.get(token_url, params={"id_nat_ps": physician["id_nat_ps"]}).json()
    address = physician["address"]
    with Client(op["http"], token=token["access_token"], verify=state["ca_file"]) as hospital:
        found = None
        while found is None:
            found = next(
                (m for m in hospital.list_messages(address) if m.message_id == message_id), None
            )
            if found is None:
                if time.monotonic() > deadline:
                    sys.exit("le DLU n'est pas arrivé à l'hôpital à temps")
                time.sleep(0.3)
        detail = hospital.get_message(address, found.id)  # marks it read: sends the MDN
        print(f"[hôpital] {address} lit « {detail.subject} »")
        for doc in detail.documents:
            buffer = io.BytesIO()
            size = hospital.download_document(address, found.id, doc.index, buffer)
            print(f"[hôpital]   document {doc.filename} ({doc.type_code}, {size} octets)")
        reply = hospital.send(
            address,
            [detail.from_],
            "RE: " + detail.subject,
            "Bonjour,\n\nMme EXEMPLE est bien arrivée aux urgences ; DLU reçu et lu.\n\n"
            "Dr Camille Martin\n",
            in_reply_to=detail.message_id,
        )
        print(f"[hôpital] réponse envoyée (envoi {reply.id})")


def run(state: dict[str, Any], timeout: float) -> int:
    ehpad, dui = _account(state, "dui@", "ehpad")
    _, physician = _account(state, "camille.martin@", "hopital")
    if "api" not in dui:
        sys.exit("le fichier d'état ne donne pas d'identifiants d'API pour le DUI")
    deadline = time.monotonic() + timeout
    receiver = WebhookReceiver()
    client = Client(
        ehpad["http"],
        client_id=dui["api"]["client_id"],
        client_secret=dui["api"]["client_secret"],
        verify=state["ca_file"],
    )
    try:
        me = client.me()
        print(f"[DUI] connecté à l'API en tant que {', '.join(me.mailboxes)} ({me.kind})")
        subscription = client.subscribe(dui["address"], receiver.url)
        assert subscription.secret is not None
        print(f"[DUI] webhook abonné : {receiver.url} (abonnement {subscription.id})")

        sent = client.send(
            dui["address"],
            [physician["address"]],
            "Transfert aux urgences",
            "Bonjour,\n\nVeuillez trouver le document de liaison d'urgence de Mme EXEMPLE, "
            "résidente de l'EHPAD Les Tilleuls, transférée ce jour.\n\nLe DUI de l'EHPAD\n",
            documents=[Document(_dlu(), "DLU.xml", "text/xml", type_code=DLU_TYPE_CODE)],
            patient=RESIDENT,
            read_receipt=True,
        )
        print(f"[DUI] DLU envoyé : envoi {sent.id}, {sent.message_id}")
        for r in sent.recipients:
            print(f"[DUI]   {r.address} : {r.status}")

        threading.Thread(
            target=hospital_reads_and_replies,
            args=(state, sent.message_id, deadline),
            daemon=True,
        ).start()

        read = replied = False
        while not (read and replied):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print("[DUI] délai dépassé en attendant les webhooks", file=sys.stderr)
                return 1
            try:
                headers, body = receiver.calls.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            try:
                event = parse_webhook(subscription.secret, headers, body)
            except InvalidSignature as exc:
                print(f"[webhook] REFUSÉ : {exc}")
                continue
            print(f"[webhook] signature vérifiée ✓  {_event_line(event)}")
            if event.type == "message.status" and event.data.get("id") == sent.id:
                read = read or event.status().recipient(physician["address"]).status == "read"
            if event.type == "message.received":
                received = client.get_message(dui["address"], event.summary().id)
                if _answers(received, sent.message_id):
                    text = received.text.strip().replace("\n", "\n    ")
                    print(f"[DUI] réponse de {received.from_} :\n    {text}")
                    replied = True
                else:  # e.g. the read receipt itself (an RFC 8098 report) lands in the BAL
                    print(f"[DUI] (message reçu, pas la réponse : « {received.subject} »)")

        final = client.status(dui["address"], sent.id)
        for r in final.recipients:
            print(f"[DUI] statut final : {r.address} : {r.status} ({r.updated_at})")
        log = client.deliveries(dui["address"], subscription.id)
        print(
            f"[DUI] journal du webhook : {len(log)} livraisons, "
            f"{sum(1 for d in log if d.status == 'delivered')} réussies"
        )
        client.unsubscribe(dui["address"], subscription.id)
        return 0
    except ApiError as exc:
        print(f"[DUI] erreur de l'API : {exc.detail} ({exc.status}, {exc.type})", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"[DUI] erreur : {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
        receiver.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=Path("demo-state.json"))
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        state = json.loads(args.state.read_text(encoding="utf-8"))
    except OSError as exc:
        sys.exit(f"{args.state} : {exc.strerror} (lancez d'abord `make demo`)")
    return run(state, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
