"""A throwaway trust space on loopback: a CA, operators, their white list and configuration.

Used by `mssante demo`, by the test suite and by integrators' own tests. Each operator gets
an operator certificate whose subject DN follows the white-list convention
(`CN=<mx host>,OU=<idNat_Struct>,O=…,ST=…,C=FR`), a configuration file, a data directory
and a listing in a white list XML written in the ANS format (namespace
`https://listeblanche.mssante.fr/schema`).
"""

from __future__ import annotations

import base64
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mssante.config import Config, load_config
from mssante.formats.trust_list import NAMESPACE
from mssante.identity.settings import OidcSettings
from mssante.pki import DemoCA, DistinguishedName
from mssante.runtime import Operator


@dataclass(frozen=True)
class OperatorSpec:
    domain: str
    organization: str
    id_nat_struct: str  # the OU of the operator certificate
    state: str = "Paris (75)"

    @property
    def mx_host(self) -> str:
        return f"mx.{self.domain}"

    def dn(self) -> DistinguishedName:
        return DistinguishedName(
            common_name=self.mx_host,
            organizational_unit=self.id_nat_struct,
            organization=self.organization,
            state=self.state,
        )


@dataclass(frozen=True)
class TrustListEntry:
    domain: str
    description: str
    operator_dn: str


def build_trust_list_xml(
    entries: Sequence[TrustListEntry], generated_at: datetime | None = None
) -> bytes:
    """A white list in the ANS format (SPEC §1.2)."""
    stamp = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ET.register_namespace("", NAMESPACE)
    root = ET.Element(f"{{{NAMESPACE}}}ListeBlancheMSSante")
    ET.SubElement(root, f"{{{NAMESPACE}}}DateDeGeneration").text = stamp
    domains = ET.SubElement(root, f"{{{NAMESPACE}}}ListeDomaines")
    for entry in entries:
        node = ET.SubElement(domains, f"{{{NAMESPACE}}}Domaine")
        ET.SubElement(node, f"{{{NAMESPACE}}}Nom").text = entry.domain
        ET.SubElement(node, f"{{{NAMESPACE}}}Description").text = entry.description
        ET.SubElement(node, f"{{{NAMESPACE}}}DNCertificatOperateur").text = entry.operator_dn
        ET.SubElement(node, f"{{{NAMESPACE}}}ResponsableContact").text = "demo"
        ET.SubElement(node, f"{{{NAMESPACE}}}SupportContact").text = "demo"
        ET.SubElement(node, f"{{{NAMESPACE}}}DateMAJ").text = stamp
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_str(value)
    return repr(value)


def write_operator_config(
    path: Path,
    *,
    data_dir: Path,
    domain: str,
    hostname: str,
    cert_file: Path,
    key_file: Path,
    trust_anchors: Path,
    trust_list_file: Path | None = None,
    checksum_file: Path | None = None,
    database_url: str = "",
    submission_port: int = 0,
    inbound_port: int = 0,
    routes: dict[str, str] | None = None,
    use_mx: bool = False,
    name: str = "Opérateur MSSanté",
    extra: str = "",
    relay: Mapping[str, int | float | str] | None = None,
    identity: OidcSettings | None = None,
    http_port: int = 0,
    imap_port: int = 0,
    imaps_port: int = 0,
    directory: Mapping[str, str] | None = None,
) -> Path:
    """Write a complete configuration file for one operator (also used by `mssante init`).

    `relay` sets keys of the `[relay]` table (`retry_initial`, `retry_max`,
    `queue_lifetime`, `delay_warning`, `poll_interval`, `connect_timeout`, `workers`…) over
    the defaults written here; `extra` is appended and can only add new tables.
    `directory` writes keys of the `[directory]` table (e.g. `publish_url`).
    """
    relay_settings: dict[str, int | float | str] = {"retry_initial": 5, "poll_interval": 0.2}
    relay_settings.update(relay or {})
    key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    lines = [
        "# mssante operator configuration (see docs/configuration.md)",
        f"data_dir = {_toml_str(str(data_dir))}",
        "",
        "[operator]",
        f"domains = [{_toml_str(domain)}]",
        f"hostname = {_toml_str(hostname)}",
        f"name = {_toml_str(name)}",
        "",
        "[database]",
        f"url = {_toml_str(database_url)}  # empty: SQLite in data_dir",
        "",
        "[storage]",
        'blob_dir = "blobs"',
        'active_key = "k1"',
        "",
        "[[storage.keys]]",
        'id = "k1"',
        f"key = {_toml_str(key)}  # AES-256-GCM key: keep it secret, back it up",
        "",
        "[tls]",
        f"cert_file = {_toml_str(str(cert_file))}",
        f"key_file = {_toml_str(str(key_file))}",
        f"trust_anchors = {_toml_str(str(trust_anchors))}",
        'min_version = "1.2"',
        "",
        "[smtp.submission]",
        'host = "127.0.0.1"',
        f"port = {submission_port}",
        "",
        "[smtp.inbound]",
        'host = "127.0.0.1"',
        f"port = {inbound_port}",
        "",
        "[relay]",
        f"use_mx = {'true' if use_mx else 'false'}",
        *[f"{k} = {_toml_value(v)}" for k, v in relay_settings.items()],
        "",
        "[relay.routes]",
        *[f"{_toml_str(d)} = {_toml_str(t)}" for d, t in (routes or {}).items()],
        "",
        "[http]",
        'host = "127.0.0.1"',
        f"port = {http_port}",
        "",
        "[imap]",
        'host = "127.0.0.1"',
        f"port = {imap_port}",
        f"tls_port = {imaps_port}",
        "",
        "[trust_list]",
    ]
    if trust_list_file:
        lines.append(f"file = {_toml_str(str(trust_list_file))}")
    if checksum_file:
        lines.append(f"checksum_file = {_toml_str(str(checksum_file))}")
    if identity is not None:
        lines += ["", "[identity]", 'provider = "custom"']
        for key in (
            "client_id", "client_secret", "issuer", "authorization_endpoint", "token_endpoint",
            "userinfo_endpoint", "jwks_uri", "introspection_endpoint",
        ):  # fmt: skip
            value = getattr(identity, key) or ""
            lines.append(f"{key} = {_toml_str(value)}")
        audience = ", ".join(_toml_str(a) for a in identity.accepted_audiences)
        lines.append(f"audience = [{audience}]")
    if directory:
        lines += ["", "[directory]", *[f"{k} = {_toml_str(v)}" for k, v in directory.items()]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    path.chmod(0o600)
    return path


@dataclass
class LocalOperator:
    spec: OperatorSpec
    config_file: Path
    config: Config
    operator: Operator | None = None


@dataclass
class LocalTrustSpace:
    """Build with `create`, then `await start()`; `operators[i].operator` is running."""

    root: Path
    ca: DemoCA
    ca_file: Path
    trust_list_file: Path
    operators: list[LocalOperator] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        root: Path,
        specs: Sequence[OperatorSpec],
        *,
        database_urls: Sequence[str] | None = None,
        extra_trust_entries: Sequence[TrustListEntry] = (),
        extra_config: str = "",
        relay: Mapping[str, int | float | str] | None = None,
        identity: OidcSettings | None = None,
        ca: DemoCA | None = None,
        directory: Mapping[str, str] | None = None,
    ) -> LocalTrustSpace:
        """`ca`: the demo CA to use (one is made if None); `directory`: `[directory]` keys
        of every operator (e.g. the demo national directory's `publish_url`)."""
        root.mkdir(parents=True, exist_ok=True)
        ca = ca or DemoCA.create("mssante demo CA (not IGC-Sante)")
        ca_file = root / "ca.pem"
        ca.write_cert(ca_file)
        entries = [
            TrustListEntry(s.domain, s.organization, s.dn().rfc4514()) for s in specs
        ] + list(extra_trust_entries)
        trust_list_file = root / "listeblanchemssante.xml"
        trust_list_file.write_bytes(build_trust_list_xml(entries))
        space = cls(root=root, ca=ca, ca_file=ca_file, trust_list_file=trust_list_file)
        for i, spec in enumerate(specs):
            base = root / spec.domain
            cert = ca.issue(
                spec.dn(),
                dns_names=(spec.mx_host, "localhost"),
                ip_addresses=("127.0.0.1",),
            )
            cert_file, key_file = base / "tls" / "operator.pem", base / "tls" / "operator.key"
            cert_file.parent.mkdir(parents=True, exist_ok=True)
            cert.write(cert_file, key_file, chain=True)
            config_file = write_operator_config(
                base / "mssante.toml",
                data_dir=base / "data",
                domain=spec.domain,
                hostname=spec.mx_host,
                cert_file=cert_file,
                key_file=key_file,
                trust_anchors=ca_file,
                trust_list_file=trust_list_file,
                database_url=database_urls[i] if database_urls else "",
                name=spec.organization,
                extra=extra_config,
                relay=relay,
                identity=identity,
                directory=directory,
            )
            space.operators.append(
                LocalOperator(spec=spec, config_file=config_file, config=load_config(config_file))
            )
        return space

    async def start(self) -> None:
        for local in self.operators:
            local.operator = Operator(local.config)
            await local.operator.start()
        self.connect_routes()

    def connect_routes(self) -> None:
        """Point every operator's relay at the others' inbound listeners (ports known now)."""
        for local in self.operators:
            assert local.operator is not None
            for other in self.operators:
                if other is local or other.operator is None or other.operator.inbound is None:
                    continue
                if local.operator.relay is not None:
                    local.operator.relay.routes[other.spec.domain] = (
                        f"127.0.0.1:{other.operator.inbound.port}"
                    )

    async def stop(self) -> None:
        for local in self.operators:
            if local.operator is not None:
                await local.operator.stop()
                local.operator = None

    def __getitem__(self, domain: str) -> LocalOperator:
        for local in self.operators:
            if local.spec.domain == domain:
                return local
        raise KeyError(domain)
