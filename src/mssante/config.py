"""Configuration: one TOML file with a typed schema.

`load_config` reads the file and validates it with pydantic; every error is reported at once
with its key path (`smtp.submission.port: …`), so an operator fixes a file in one pass.
Relative paths are resolved against the directory that holds the configuration file.
Only `runtime.py` and the CLI read configuration; nothing else does.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mssante.domain.trust import is_mssante_domain

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_HOSTPORT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})", re.ASCII)
_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.ASCII)


def parse_duration(value: object) -> int:
    """Seconds from an int or a string such as "30s", "15m", "4h", "5d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 4h or 5d")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError("expected a duration such as 30s, 15m, 4h or 5d")


Duration = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorSection(_Section):
    """Who this operator is."""

    domains: list[str] = Field(min_length=1, description="Hosted MSSanté domains (R11).")
    hostname: str = Field(description="Public host name announced in greetings and DSNs.")
    name: str = "Opérateur MSSanté"
    allow_non_mssante_domains: bool = Field(
        default=False,
        description="Allow hosted domains outside mssante.fr (tests only; R11).",
    )

    @field_validator("domains")
    @classmethod
    def _domains_valid(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            name = raw.strip().rstrip(".")
            if not name.isascii() or not _DOMAIN.fullmatch(name.lower()):
                raise ValueError(f"{raw!r} is not a valid domain name")
            name = name.lower()
            if name in out:
                raise ValueError(f"domain {name!r} is listed twice")
            out.append(name)
        return out

    @model_validator(mode="after")
    def _mssante_suffix(self) -> OperatorSection:
        if not self.allow_non_mssante_domains:
            bad = [d for d in self.domains if not is_mssante_domain(d)]
            if bad:
                raise ValueError(
                    "hosted domains must be subdomains of mssante.fr (R11): " + ", ".join(bad)
                )
        return self


class DatabaseSection(_Section):
    url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite in the data directory.",
    )
    pool_size: int = Field(default=10, ge=1, le=500)

    @field_validator("url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value


class BlobKey(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    key: str = Field(description="32 random bytes, base64.", repr=False)

    @field_validator("key")
    @classmethod
    def _key_is_32_bytes(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not valid base64") from exc
        if len(raw) != 32:
            raise ValueError(f"an AES-256 key is 32 bytes, got {len(raw)}")
        return value

    def raw(self) -> bytes:
        return base64.b64decode(self.key)


class StorageSection(_Section):
    blob_dir: Path = Path("blobs")
    keys: list[BlobKey] = Field(min_length=1)
    active_key: str

    @model_validator(mode="after")
    def _active_known(self) -> StorageSection:
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("storage.keys: key ids must be unique")
        if self.active_key not in ids:
            raise ValueError(f"active_key {self.active_key!r} is not one of {ids}")
        return self


class TLSSection(_Section):
    cert_file: Path = Field(description="Operator certificate chain (PEM), server and client.")
    key_file: Path
    trust_anchors: Path = Field(
        description="CA certificates of the trust space (IGC-Santé in production, R10)."
    )
    min_version: Literal["1.2", "1.3"] = "1.2"


class ListenerSection(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    max_message_size: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=100, ge=1, le=10000)
    timeout: Duration = 300
    max_connections: int = Field(default=500, ge=1)

    @field_validator("timeout", mode="before")
    @classmethod
    def _dur(cls, value: object) -> int:
        return parse_duration(value)


class SubmissionSection(ListenerSection):
    port: int = Field(default=587, ge=0, le=65535)
    file_sent: bool = Field(
        default=True, description="File a copy of each submitted message in the sender's Sent."
    )


class InboundSection(ListenerSection):
    port: int = Field(default=25, ge=0, le=65535)
    insecure_plaintext_for_benchmarks: bool = Field(
        default=False,
        description="Benchmarks only, never in production: accept mail without STARTTLS "
        "and without the operator certificate check (`make bench` with smtp-source).",
    )


class SMTPSection(_Section):
    submission: SubmissionSection = SubmissionSection()
    inbound: InboundSection = InboundSection()


class RelaySection(_Section):
    routes: dict[str, str] = Field(
        default_factory=dict, description="Domain → host:port, checked before MX lookup."
    )
    use_mx: bool = True
    workers: int = Field(default=4, ge=1, le=256)
    queue_lifetime: Duration = 5 * 86400
    delay_warning: Duration = 4 * 3600
    retry_initial: Duration = 60
    retry_max: Duration = 3600
    connect_timeout: Duration = 30
    poll_interval: float = Field(default=1.0, gt=0, le=60)

    @field_validator(
        "queue_lifetime",
        "delay_warning",
        "retry_initial",
        "retry_max",
        "connect_timeout",
        mode="before",
    )
    @classmethod
    def _dur(cls, value: object) -> int:
        return parse_duration(value)

    @field_validator("routes")
    @classmethod
    def _routes_valid(cls, value: dict[str, str]) -> dict[str, str]:
        errors = []
        out: dict[str, str] = {}
        for domain, target in value.items():
            if not _HOSTPORT.fullmatch(target) or int(target.rsplit(":", 1)[1]) > 65535:
                errors.append(f"{domain}: {target!r} is not host:port")
            out[domain.lower().rstrip(".")] = target
        if errors:
            raise ValueError("; ".join(errors))
        return out


class IMAPSection(_Section):
    """IMAP for mail clients and care software (R12; issue 4)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=143, ge=0, le=65535, description="STARTTLS role.")
    tls_port: int = Field(default=993, ge=0, le=65535, description="Implicit TLS role.")
    max_literal: int = Field(default=50 * 1024 * 1024, ge=1024, description="APPENDLIMIT.")
    quota_mb: int = Field(default=10240, ge=1)
    idle_timeout: Duration = 1800

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _dur(cls, value: object) -> int:
        return parse_duration(value)


class HTTPSection(_Section):
    """The HTTP listener: OAuth2 token endpoint and API (R18; issue 7 builds on it)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls: bool = Field(default=True, description="HTTPS with the operator certificate.")
    public_url: str = Field(
        default="",
        description="Public base URL of the web application (`https://host[:port]`), used "
        "for the PSC redirect URI; empty: taken from each request.",
    )

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        host = r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
        if value and not re.fullmatch(rf"https?://{host}(:\d{{1,5}})?/?", value, re.ASCII):
            raise ValueError("expected a base URL such as https://webmail.example.mssante.fr")
        return value.rstrip("/")


class TrustListSection(_Section):
    file: Path | None = Field(default=None, description="White list loaded at start if set.")
    checksum_file: Path | None = None


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: Path | None = None


class AuthSection(_Section):
    """Password logins of staff without a card (R62): password rules and throttling."""

    password_min_length: int = Field(default=12, ge=8, le=256)
    password_require_classes: int = Field(
        default=3, ge=1, le=4, description="Of lower case, upper case, digits and others."
    )
    max_failures_per_account: int = Field(default=10, ge=1)
    max_failures_per_source: int = Field(default=20, ge=1)
    failure_window: Duration = 900
    lock_duration: Duration = 900
    max_lock_duration: Duration = 3600
    base_delay: float = Field(default=0.25, ge=0, le=60)
    max_delay: float = Field(default=4.0, ge=0, le=60)
    staff_require_totp: bool = Field(
        default=False, description="Refuse staff logins without an enrolled TOTP (R62)."
    )

    @field_validator("failure_window", "lock_duration", "max_lock_duration", mode="before")
    @classmethod
    def _dur(cls, value: object) -> int:
        return parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> AuthSection:
        if self.lock_duration < 1 or self.failure_window < 1:
            raise ValueError("lock_duration and failure_window must be at least 1 second")
        if self.max_lock_duration < self.lock_duration:
            raise ValueError("max_lock_duration must not be shorter than lock_duration")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be shorter than base_delay")
        return self


class IdentitySection(_Section):
    """Bearer tokens of professionals (Pro Santé Connect, R14–R17, R61)."""

    provider: Literal["none", "psc-production", "psc-sandbox", "custom"] = Field(
        default="none",
        description="Where professionals' tokens come from; `custom` uses the URLs below.",
    )
    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    audience: list[str] = Field(
        default_factory=list, description="Accepted `aud` values (default: client_id)."
    )
    issuer: str = ""
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    userinfo_endpoint: str = ""
    jwks_uri: str = ""
    introspection_endpoint: str = ""
    use_introspection: bool = False
    required_acr: str = "eidas1"

    @model_validator(mode="after")
    def _custom_complete(self) -> IdentitySection:
        if self.provider == "custom":
            missing = [
                name
                for name in ("issuer", "token_endpoint", "userinfo_endpoint", "jwks_uri")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError("provider = custom needs " + ", ".join(missing))
        return self


class DirectorySection(_Section):
    """The copy of the national directory, its search and the publication of our BALs."""

    # FHIR read API /fhir/v2 (SPEC §4.1): open unless keys are listed (ESANTE-API-KEY).
    fhir_api_keys: list[str] = Field(
        default_factory=list, repr=False, description="Accepted ESANTE-API-KEY values."
    )

    # Publication of our BALs (SPEC §4.2, R48): empty publish_url means not published.
    publish_url: str = Field(
        default="",
        description="FHIR base URL of the national directory's BAL PATCH endpoint.",
    )
    publish_api_key: str = Field(default="", repr=False, description="ESANTE-API-KEY header.")
    publish_ca_file: Path | None = Field(
        default=None, description="CA bundle (PEM) for the publication endpoint's TLS."
    )

    # Import of the extractions (issue 5, SPEC §4.3): limits that refuse a suspicious file.
    import_max_rejected: int = Field(
        default=100,
        ge=0,
        description="Bad rows always tolerated in an import (each is reported and skipped).",
    )
    import_max_rejected_ratio: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of bad rows above which (and above import_max_rejected) the "
        "file is refused.",
    )
    import_max_removed_ratio: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Share of the rows in force an import may remove without --force.",
    )

    @field_validator("publish_url")
    @classmethod
    def _publish_base_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value, re.ASCII):
            raise ValueError(
                "expected a base URL such as https://gateway.api.esante.gouv.fr/fhir/v2"
            )
        return value.rstrip("/")


class ApiSection(_Section):
    """The integration API for software: limits, idempotency, webhooks (issue 7)."""

    # -- messages (send, R28/R29) --
    max_request_bytes: int = Field(
        default=70 * 1024 * 1024,
        ge=1024,
        description="Largest request body of a send (JSON with base64 contents, or the "
        "multipart upload as a whole); larger ones get 413 while still streaming.",
    )
    max_message_size_per: int = Field(default=0, ge=0, description="0: smtp.submission's.")
    max_message_size_org: int = Field(default=0, ge=0, description="0: smtp.submission's.")
    max_message_size_app: int = Field(default=0, ge=0, description="0: smtp.submission's.")
    max_message_size_cab: int = Field(default=0, ge=0, description="0: smtp.submission's.")
    patient_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="R29: largest message towards @patient.mssante.fr (25 MiB).",
    )
    idempotency_ttl: Duration = 24 * 3600
    default_nil: str = Field(
        default="mssante-api",
        min_length=1,
        max_length=200,
        description="X-MSS-NIL of document messages whose request names none.",
    )
    legal_recipients_policy: Literal["inform", "warn", "require"] = "inform"
    # -- webhooks (item 5) --
    allow_http_webhooks: bool = Field(
        default=False,
        description="Accept http:// webhook URLs to any host (demo only); loopback always.",
    )
    webhook_retry_initial: float = Field(default=10.0, gt=0, le=86400)
    webhook_retry_max: float = Field(default=3600.0, gt=0, le=86400)
    webhook_give_up_after: Duration = 24 * 3600
    webhook_timeout: float = Field(default=10.0, gt=0, le=300)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    webhook_poll_interval: float = Field(default=5.0, gt=0, le=3600)
    webhook_ca_file: Path | None = Field(
        default=None, description="CA bundle to verify subscribers' https certificates."
    )

    @field_validator("webhook_give_up_after", mode="before")
    @classmethod
    def _webhook_dur(cls, value: object) -> int:
        return parse_duration(value)

    @field_validator("idempotency_ttl", mode="before")
    @classmethod
    def _dur(cls, value: object) -> int:
        return parse_duration(value)


class Config(_Section):
    """The whole configuration of one operator."""

    data_dir: Path
    operator: OperatorSection
    database: DatabaseSection = DatabaseSection()
    storage: StorageSection
    tls: TLSSection
    smtp: SMTPSection = SMTPSection()
    relay: RelaySection = RelaySection()
    trust_list: TrustListSection = TrustListSection()
    imap: IMAPSection = IMAPSection()
    http: HTTPSection = HTTPSection()
    directory: DirectorySection = DirectorySection()
    api: ApiSection = ApiSection()
    identity: IdentitySection = IdentitySection()
    auth: AuthSection = AuthSection()
    logging: LoggingSection = LoggingSection()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'mssante.db'}"

    @property
    def blob_root(self) -> Path:
        return self.data_dir / self.storage.blob_dir


class ConfigError(Exception):
    """Every problem found in a configuration file, each with its key path."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        where = f"{path}: " if path else ""
        super().__init__(where + "; ".join(problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif re.fullmatch(r"[A-Za-z0-9_-]+", item):
            parts.append(("." if parts else "") + item)
        else:
            parts.append(f'."{item}"' if parts else f'"{item}"')
    return "".join(parts) or "(root)"


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative paths relative to the configuration file's directory."""

    def fix(section: Any, key: str) -> None:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            p = Path(os.path.expanduser(section[key]))
            section[key] = str(p if p.is_absolute() else base / p)

    fix(data, "data_dir")
    tls = data.get("tls")
    for key in ("cert_file", "key_file", "trust_anchors"):
        fix(tls, key)
    trust = data.get("trust_list")
    for key in ("file", "checksum_file"):
        fix(trust, key)
    fix(data.get("logging"), "file")
    fix(data.get("directory"), "publish_ca_file")
    fix(data.get("api"), "webhook_ca_file")


def validate_config(data: Mapping[str, Any], base: Path, path: Path | None = None) -> Config:
    mutable = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    _resolve_paths(mutable, base)
    try:
        return Config.model_validate(mutable)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_loc(tuple(err['loc']))}: {msg}")
        raise ConfigError(path, problems) from None


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, ["the file is not UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax: {exc}"]) from None
    return validate_config(data, path.resolve().parent, path)


def config_path_from_env(explicit: str | None) -> Path | None:
    value = explicit or os.environ.get("MSSANTE_CONFIG")
    return Path(value) if value else None
