"""`mssante demo`: a complete local trust space to try MSSanté in one command.

Two operators on loopback (`hopital-demo.mssante.fr`, `ehpad-demo.mssante.fr`), a demo CA
that issues their certificates, a demo white list naming both, the actors of the six flows
of DESIGN.md, one message per flow, and a summary of what to try next. Everything is
fictitious: identifiers are synthetic (valid keys), there is no real patient.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import click

from mssante import demo_directory, demo_documents, demo_dui
from mssante.domain.identifiers import luhn_check_digit
from mssante.domain.mailboxes import MailboxType
from mssante.identity.demo_provider import DemoProfessional, DemoProvider
from mssante.pki import DemoCA
from mssante.services.passwords import generate_password
from mssante.testing.clients import make_message, seed_structure_mailbox
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec

DEMO_CLIENT = "mssante-demo"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"  # noqa: S105 - demo provider only
HOSPITAL = "hopital-demo.mssante.fr"
EHPAD = "ehpad-demo.mssante.fr"


def _finess(prefix8: str) -> str:
    return "1" + prefix8 + luhn_check_digit(prefix8)


def _rpps(prefix10: str) -> str:
    return prefix10 + luhn_check_digit(prefix10)


@dataclass(frozen=True)
class Actor:
    local: str
    domain: str
    type: MailboxType
    label: str
    rpps: str | None = None  # PER
    structure: tuple[str, str] | None = None  # (idNat_Struct, name) for ORG/APP
    profession: str = ""

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}"


CH = (_finess("75000002"), "Centre hospitalier de démonstration")
EHPAD_T = (_finess("13000003"), "EHPAD Les Tilleuls")
ACTORS: tuple[Actor, ...] = (
    Actor(
        "camille.martin",
        HOSPITAL,
        MailboxType.PER,
        "Dr Camille Martin, médecin hospitalier",
        rpps=_rpps("1000000001"),
        profession="Médecin",
    ),
    Actor(
        "lea.dubois",
        HOSPITAL,
        MailboxType.PER,
        "Dr Léa Dubois, médecin généraliste",
        rpps=_rpps("1000000002"),
        profession="Médecin généraliste",
    ),
    Actor(
        "hugo.bernard",
        HOSPITAL,
        MailboxType.PER,
        "Hugo Bernard, pharmacien d'officine",
        rpps=_rpps("1000000003"),
        profession="Pharmacien",
    ),
    Actor(
        "secretariat.medecine", HOSPITAL, MailboxType.ORG, "Secrétariat de médecine", structure=CH
    ),
    Actor("dpi", HOSPITAL, MailboxType.APP, "DPI de l'hôpital (logiciel)", structure=CH),
    Actor(
        "mdph",
        HOSPITAL,
        MailboxType.ORG,
        "MDPH de démonstration",
        structure=(_finess("75000003"), "MDPH de démonstration"),
    ),
    Actor(
        "cd-protection-enfance",
        HOSPITAL,
        MailboxType.ORG,
        "Conseil départemental, CRIP",
        structure=(_finess("75000004"), "Conseil départemental de démonstration"),
    ),
    Actor("accueil", EHPAD, MailboxType.ORG, "EHPAD Les Tilleuls, accueil", structure=EHPAD_T),
    Actor("dui", EHPAD, MailboxType.APP, "DUI de l'EHPAD (logiciel)", structure=EHPAD_T),
    Actor(
        "ssiad",
        EHPAD,
        MailboxType.ORG,
        "SSIAD du Val",
        structure=(_finess("13000004"), "SSIAD du Val"),
    ),
    Actor(
        "dac",
        EHPAD,
        MailboxType.ORG,
        "DAC de démonstration",
        structure=(_finess("13000005"), "DAC de démonstration"),
    ),
    Actor(
        "ime",
        EHPAD,
        MailboxType.ORG,
        "IME Les Cigales",
        structure=(_finess("13000006"), "IME Les Cigales"),
    ),
    Actor(
        "pcpe",
        EHPAD,
        MailboxType.ORG,
        "PCPE de démonstration",
        structure=(_finess("13000007"), "PCPE de démonstration"),
    ),
    # The EHPAD's coordinating physician: found from the hospital by typing "lefevre".
    Actor(
        "helene.lefevre",
        EHPAD,
        MailboxType.PER,
        "Dr Hélène Lefèvre, médecin coordonnateur",
        rpps=_rpps("1000000004"),
        profession="Médecin",
    ),
)

FLOWS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "1. EHPAD -> pharmacie : prescription",
        f"accueil@{EHPAD}",
        (f"hugo.bernard@{HOSPITAL}",),
        "Prescription pour un résident (Mme Exemple)",
    ),
    (
        "2. DAC -> SSIAD : demande d'intervention",
        f"dac@{EHPAD}",
        (f"ssiad@{EHPAD}",),
        "Demande d'intervention SSIAD",
    ),
    (
        "3. PCPE -> MDPH : saisine de fin de prise en charge",
        f"pcpe@{EHPAD}",
        (f"mdph@{HOSPITAL}",),
        "Saisine fin de prise en charge",
    ),
    (
        "4. IME -> Conseil départemental : information préoccupante",
        f"ime@{EHPAD}",
        (f"cd-protection-enfance@{HOSPITAL}",),
        "Information préoccupante",
    ),
    (
        "5. Médecin de ville -> DAC : signalement",
        f"lea.dubois@{HOSPITAL}",
        (f"dac@{EHPAD}",),
        "Formulaire de signalement",
    ),
    (
        "6. Hôpital -> médecin traitant et EHPAD : lettre de liaison",
        f"camille.martin@{HOSPITAL}",
        (f"lea.dubois@{HOSPITAL}", f"accueil@{EHPAD}"),
        "Lettre de liaison de sortie",
    ),
)


def _demo_password() -> str:
    """A random password that swaks and other CLIs accept as an option value (no leading -)."""
    password = generate_password()
    while password.startswith("-"):
        password = generate_password()
    return password


def _names(label: str) -> tuple[str, str]:
    """("Camille", "Martin") from "Dr Camille Martin, médecin hospitalier"."""
    words = label.split(",")[0].split()
    return words[-2], words[-1]


def _seed(space: LocalTrustSpace) -> dict[str, str]:
    passwords: dict[str, str] = {}
    created: set[str] = set()
    for actor in ACTORS:
        op = space[actor.domain].operator
        assert op is not None
        boxes = op.services.mailboxes
        if boxes.find(actor.address) is not None:
            continue
        password = _demo_password()
        if actor.type is MailboxType.PER:
            assert actor.rpps
            given, family = _names(actor.label)
            from mssante.testing.clients import seed_professional_mailbox

            seed_professional_mailbox(
                boxes,
                actor.address,
                actor.rpps,
                password,
                family_name=family,
                given_name=given,
                profession=actor.profession,
            )
        else:
            assert actor.structure
            key = f"{actor.domain}/{actor.structure[0]}"
            seed_structure_mailbox(
                boxes,
                actor.address,
                actor.structure[0],
                actor.structure[1],
                password,
                type=actor.type,
                responsible="Direction " + actor.structure[1],
                create_structure=key not in created,
            )
            created.add(key)
        passwords[actor.address] = password
    # The hospital physician also acts on the secretariat's ORG mailbox.
    op = space[HOSPITAL].operator
    assert op is not None
    if f"camille.martin@{HOSPITAL}" not in op.services.mailboxes.members(
        f"secretariat.medecine@{HOSPITAL}"
    ):
        op.services.mailboxes.add_member(
            f"secretariat.medecine@{HOSPITAL}", f"camille.martin@{HOSPITAL}"
        )
    return passwords


async def _send_flows(space: LocalTrustSpace, passwords: dict[str, str]) -> list[dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    results = []
    for index, (name, sender, recipients, subject) in enumerate(FLOWS):
        op = space[sender.rpartition("@")[2]].operator
        assert op is not None and op.submission is not None
        body = (
            f"Bonjour,\n\n{subject} (message de démonstration, aucune donnée réelle).\n\n"
            f"Cordialement,\n{sender}\n"
        )
        data = make_message(sender, recipients, subject=subject, body=body)
        actor = next(a for a in ACTORS if a.address == sender)
        identity = demo_documents.sender_identity(actor.label, actor.rpps, actor.structure)
        documents = demo_documents.document_message(index, sender, identity, recipients, body)
        if documents is not None:  # flows 1 and 6 carry an IHE_XDM.ZIP (issue 6)
            data = documents[0]
        status = "accepted"
        try:
            await aiosmtplib.send(
                data,
                sender=sender,
                recipients=list(recipients),
                hostname="127.0.0.1",
                port=op.submission.port,
                username=sender,
                password=passwords[sender],
                start_tls=True,
                tls_context=ctx,
                timeout=30,
            )
        except aiosmtplib.SMTPException as exc:
            status = f"refused: {exc}"
        result = {"flow": name, "from": sender, "to": list(recipients), "status": status}
        results.append(result | (documents[1] if documents else {}))
    return results


async def _wait_delivered(
    space: LocalTrustSpace, flows: list[dict[str, Any]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    for flow in flows:
        for rcpt in flow["to"]:
            op = space[rcpt.rpartition("@")[2]].operator
            assert op is not None
            while not await asyncio.to_thread(op.services.store.list, rcpt):
                if time.monotonic() > deadline:
                    flow["status"] = "queued"
                    break
                await asyncio.sleep(0.1)
            else:
                flow["status"] = "delivered"


def _pin_ports(space: LocalTrustSpace) -> None:
    """Write the bound ports and routes into each config file, for CLI use during the demo."""
    for local in space.operators:
        op = local.operator
        assert op is not None and op.submission and op.inbound
        text = local.config_file.read_text(encoding="utf-8")
        text = re.sub(
            r"(\[smtp\.submission\]\nhost = \"[^\"]*\"\nport = )\d+",
            rf"\g<1>{op.submission.port}",
            text,
        )
        text = re.sub(
            r"(\[smtp\.inbound\]\nhost = \"[^\"]*\"\nport = )\d+", rf"\g<1>{op.inbound.port}", text
        )
        if op.imap is not None and op.imaps is not None:
            text = re.sub(
                r"(\[imap\]\nhost = \"[^\"]*\"\nport = )\d+\ntls_port = \d+",
                rf"\g<1>{op.imap.port}\ntls_port = {op.imaps.port}",
                text,
            )
        if op.http is not None:
            text = re.sub(
                r"(\[http\]\nhost = \"[^\"]*\"\nport = )\d+", rf"\g<1>{op.http.port}", text
            )
        routes = "".join(
            f'"{o.spec.domain}" = "127.0.0.1:{o.operator.inbound.port}"\n'
            for o in space.operators
            if o is not local and o.operator and o.operator.inbound
        )
        text = re.sub(r"\[relay\.routes\]\n(?:\"[^\n]*\n)*", "[relay.routes]\n" + routes, text)
        local.config_file.write_text(text, encoding="utf-8")


def _state(
    space: LocalTrustSpace, passwords: dict[str, str], flows: list[dict[str, Any]]
) -> dict[str, Any]:
    operators = []
    for local in space.operators:
        op = local.operator
        assert op is not None and op.submission and op.inbound
        operators.append(
            {
                "domain": local.spec.domain,
                "name": local.spec.organization,
                "config_file": str(local.config_file),
                "submission": {"host": op.submission.host, "port": op.submission.port},
                "mx": {"host": op.inbound.host, "port": op.inbound.port},
                **({"http": op.http_url} if op.http_url else {}),
                **({"imap": {"host": op.imap.host, "port": op.imap.port}} if op.imap else {}),
                **({"imaps": {"host": op.imaps.host, "port": op.imaps.port}} if op.imaps else {}),
                "accounts": [
                    {
                        "address": a.address,
                        "password": passwords.get(a.address, ""),
                        "type": a.type.value,
                        "label": a.label,
                        **({"id_nat_ps": "8" + a.rpps} if a.rpps else {}),
                    }
                    for a in ACTORS
                    if a.domain == local.spec.domain
                ],
            }
        )
    return {
        "ca_file": str(space.ca_file),
        "data_dir": str(space.root),
        "trust_list_file": str(space.trust_list_file),
        "operators": operators,
        "flows": flows,
    }


def _summary(state: dict[str, Any]) -> str:
    lines = ["", "=== Espace de confiance MSSanté de démonstration ===", ""]
    for op in state["operators"]:
        lines.append(f"{op['name']} ({op['domain']})")
        lines.append(
            "  soumission SMTP (STARTTLS + AUTH) : "
            f"{op['submission']['host']}:{op['submission']['port']}"
        )
        lines.append(f"  MX entre opérateurs (TLS mutuel) : {op['mx']['host']}:{op['mx']['port']}")
        if "imap" in op:
            lines.append(
                f"  IMAP : {op['imap']['host']}:{op['imap']['port']} (STARTTLS),"
                f" {op['imaps']['host']}:{op['imaps']['port']} (TLS)"
            )
        lines.append(f"  configuration : {op['config_file']}")
        for acc in op["accounts"]:
            lines.append(
                f"    {acc['type']}  {acc['address']:<45} mot de passe : {acc['password']}"
            )
        lines.append("")
    if "directory" in state:
        lines += [demo_directory.summary_line(state), ""]
    lines.append("Flux envoyés :")
    for flow in state["flows"]:
        lines.append(f"  {flow['flow']} : {flow['status']}")
        lines += demo_documents.summary_lines(flow)
    first = state["operators"][0]
    acc = first["accounts"][0]
    to = state["operators"][1]["accounts"][0]["address"]
    per = next(a for a in first["accounts"] if a.get("id_nat_ps"))
    lines += [
        "",
        "À essayer :",
        f"  swaks --to {to} --from {acc['address']} \\",
        f"        --server {first['submission']['host']}:{first['submission']['port']} --tls \\",
        f"        --tls-ca-path {state['ca_file']} --auth PLAIN \\",
        f"        --auth-user {acc['address']} --auth-password '{acc['password']}'",
        f"  mssante --config {first['config_file']} mailbox list",
        f"  mssante --config {first['config_file']} trace list",
        "",
        "Connexion par jeton Pro Santé Connect (fournisseur de DÉMONSTRATION) :",
        f"  TOKEN=$(curl -s '{state['identity']['token_url']}?id_nat_ps={per['id_nat_ps']}'"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"  curl --ssl-reqd --cacert {state['ca_file']} \\",
        f"       --url smtp://{first['submission']['host']}:{first['submission']['port']} \\",
        f'       --user {per["address"]}: --oauth2-bearer "$TOKEN" \\',
        f"       --mail-from {per['address']} --mail-rcpt {to} --upload-file message.eml",
        "Thunderbird : compte existant, serveur IMAP 127.0.0.1 port IMAP (TLS) ci-dessus,"
        " SSL/TLS, mot de passe normal, identifiant = l'adresse ; SMTP 127.0.0.1 port de"
        " soumission, STARTTLS. Importez le certificat de l'AC de démonstration (ca_file)"
        " dans Paramètres > Certificats > Autorités.",
        "  (un envoi hors de l'espace de confiance, ex. x@gmail.com, est refusé : 550 5.7.1)",
        "",
        f"Données : {state['data_dir']}    Ctrl-C pour arrêter.",
    ]
    return "\n".join(lines)


async def run_demo(
    data_dir: Path, state_file: Path | None, send: bool = True, dui: bool = False
) -> None:
    specs = [
        OperatorSpec(HOSPITAL, "Opérateur Hôpital Démo", CH[0], "Paris (75)"),
        OperatorSpec(EHPAD, "Opérateur EHPAD Démo", EHPAD_T[0], "Bouches-du-Rhône (13)"),
    ]
    provider = DemoProvider(
        [
            DemoProfessional("8" + a.rpps, *_names(a.label), a.profession or "Médecin")
            for a in ACTORS
            if a.rpps
        ],
        {DEMO_CLIENT: (DEMO_CLIENT_SECRET, ["http://127.0.0.1/"])},
    )
    await provider.start(allow_demo=True)
    # The national directory first: the operators publish their BALs to it (issue 5).
    ca = DemoCA.create("mssante demo CA (not IGC-Sante)")
    data_dir.mkdir(parents=True, exist_ok=True)
    ca.write_cert(data_dir / "ca.pem")
    national = await demo_directory.start_national(data_dir, ca, ACTORS)
    space = LocalTrustSpace.create(
        data_dir,
        specs,
        identity=provider.settings_for(DEMO_CLIENT, DEMO_CLIENT_SECRET),
        ca=ca,
        directory=demo_directory.operator_keys(national, data_dir / "ca.pem"),
    )
    try:
        await space.start()
        _pin_ports(space)
        passwords = await asyncio.to_thread(_seed, space)
        api_clients = await asyncio.to_thread(demo_dui.create_api_clients, space)
        await demo_directory.publish_and_refresh(space, national)
        flows = await _send_flows(space, passwords) if send else []
        await _wait_delivered(space, flows, timeout=20)
        for flow in flows:  # the receiving side reads the packages back (issue 6)
            if "documents" in flow:
                flow["received_documents"] = await asyncio.to_thread(
                    demo_documents.received_documents, space, flow
                )
        state = _state(space, passwords, flows)
        demo_directory.add_to_state(state, national)
        demo_dui.add_to_state(state, api_clients)
        state["identity"] = {
            "issuer": provider.require_issuer(),
            "token_url": f"{provider.require_issuer()}/demo/token",
            "client_id": DEMO_CLIENT,
        }
        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
            tmp.replace(state_file)
        if dui and state_file is None:  # the example reads the state file
            state_file = data_dir / "demo-state.json"
            state_file.write_text(json.dumps(state, indent=2, ensure_ascii=False), "utf-8")
        print(_summary(state), flush=True)
        print("\n".join(demo_dui.summary_lines(state, state_file)), flush=True)
        if dui and state_file is not None:
            await demo_dui.run_example(state_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("Arrêt de la démonstration…", flush=True)
    finally:
        await space.stop()
        await national.stop()
        await provider.stop()


def start_demo(
    state_file: Path | None, data_dir: Path | None, no_flows: bool, dui: bool = False
) -> None:
    """`mssante demo`: start, print the summary, run until Ctrl-C."""
    from mssante.cli import setup_logging

    setup_logging("WARNING")
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="mssante-demo-"))
    elif data_dir.exists() and any(data_dir.iterdir()):
        raise click.UsageError(f"{data_dir} is not empty; give a new or empty directory")
    asyncio.run(
        run_demo(
            data_dir.resolve(),
            state_file.resolve() if state_file else None,
            send=not no_flows,
            dui=dui,
        )
    )
