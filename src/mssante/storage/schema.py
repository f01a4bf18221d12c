"""The relational schema, shared by SQLite and PostgreSQL (SQLAlchemy Core).

Alembic migrations in `migrations/versions/` create and evolve it; this module is the
source the migrations are written from. Message bodies are not here: they live in the
encrypted blob store and rows keep only their digest and key id.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

UTC_DATETIME = DateTime(timezone=True)

structures = Table(
    "structures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("id_nat_struct", String(32), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("created_at", UTC_DATETIME, nullable=False),
)

professionals = Table(
    "professionals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("id_nat_ps", String(32), nullable=False, unique=True),
    Column("family_name", String(255), nullable=False),
    Column("given_name", String(255), nullable=False),
    Column("profession", String(255), nullable=False, default=""),
    Column("created_at", UTC_DATETIME, nullable=False),
)

# Principals who log in: a professional, a staff member of a structure, or software.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("login", String(320), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # professional | staff | application
    Column("id_nat_ps", String(32), nullable=True, index=True),
    Column("display_name", String(255), nullable=False, default=""),
    Column("password_hash", Text, nullable=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", UTC_DATETIME, nullable=False),
    # R62: second factor of staff without a CPS card (RFC 6238 TOTP, base32 secret).
    Column("totp_secret", String(64), nullable=True),
    Column("totp_last_counter", BigInteger, nullable=True),  # replay protection
    Column("password_changed_at", UTC_DATETIME, nullable=True),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("domain", String(253), nullable=False, index=True),
    Column("type", String(3), nullable=False),  # TRE_R257: PER ORG APP CAB
    Column("status", String(16), nullable=False),  # active suspended closed
    Column("list_rouge", Boolean, nullable=False, default=False),
    Column("rank", Integer, nullable=False, default=1),
    Column("id_nat_ps", String(32), nullable=True, index=True),
    Column("id_nat_struct", String(32), nullable=True, index=True),
    Column("owner_user_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("responsible", String(255), nullable=True),
    Column("description", String(255), nullable=True),
    Column("service", String(255), nullable=True),
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("updated_at", UTC_DATETIME, nullable=False),
)

mailbox_members = Table(
    "mailbox_members",
    metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("added_at", UTC_DATETIME, nullable=False),
)

folders = Table(
    "folders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("special_use", String(32), nullable=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False, default=1),
    Column("highestmodseq", BigInteger, nullable=False, default=1),
    UniqueConstraint("mailbox_id", "name", name="uq_folders_mailbox_name"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", UTC_DATETIME, nullable=False),
)

# One row per accepted SMTP transaction (or generated message such as a DSN).
envelopes = Table(
    "envelopes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_id", String(32), nullable=False, unique=True),
    Column("received_at", UTC_DATETIME, nullable=False),
    Column("origin", String(16), nullable=False),  # submission | inbound | dsn
    Column("mail_from", String(320), nullable=False),  # "" for the null sender
    Column("envid", String(100), nullable=True),  # RFC 3461 ENVID, decoded
    Column("ret", String(4), nullable=True),  # RFC 3461 RET: FULL | HDRS
    Column("body_type", String(16), nullable=True),
    Column("smtputf8", Boolean, nullable=False, default=False),
    Column("size", BigInteger, nullable=False),
    Column("blob_digest", String(64), ForeignKey("blobs.digest"), nullable=False),
    Column("message_id", String(998), nullable=True),
    Column("peer", String(255), nullable=True),
    Column("auth_login", String(320), nullable=True),
)

# One row per recipient of an envelope: the unit of the queue.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("envelope_id", Integer, ForeignKey("envelopes.id"), nullable=False, index=True),
    Column("recipient", String(320), nullable=False),
    Column("domain", String(253), nullable=False),
    Column("orcpt", String(500), nullable=True),  # RFC 3461 ORCPT, "rfc822;addr"
    Column("notify", String(32), nullable=True),  # NEVER | SUCCESS,FAILURE,DELAY subset
    Column("status", String(16), nullable=False),  # queued delivered relayed failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTC_DATETIME, nullable=True),
    Column("expires_at", UTC_DATETIME, nullable=False),
    Column("delay_notified", Boolean, nullable=False, default=False),
    Column("last_error", Text, nullable=True),
    Column("remote_mta", String(255), nullable=True),
    Column("locked_by", String(64), nullable=True),
    Column("locked_until", UTC_DATETIME, nullable=True),
    Column("updated_at", UTC_DATETIME, nullable=False),
    Index("ix_deliveries_queue", "status", "next_attempt_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("folder_id", Integer, ForeignKey("folders.id"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False, default=1),
    Column("envelope_id", Integer, ForeignKey("envelopes.id"), nullable=True, index=True),
    Column("blob_digest", String(64), ForeignKey("blobs.digest"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("message_id", String(998), nullable=True),
    Column("internal_date", UTC_DATETIME, nullable=False),
    Column("flags", Text, nullable=False, default=""),
    UniqueConstraint("folder_id", "uid", name="uq_messages_folder_uid"),
    # Migration 0007: the API's newest-first listing with a keyset cursor.
    Index("ix_messages_folder_date", "folder_id", "internal_date", "id"),
)

# Append-only trace of every step (R63): no bodies, no health data.
trace_events = Table(
    "trace_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTC_DATETIME, nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # ok | refused | failed
    Column("mailbox", String(320), nullable=True, index=True),
    Column("actor", String(320), nullable=True),
    Column("peer", String(255), nullable=True),
    Column("message_id", String(998), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("envelope_id", Integer, nullable=True),
    Column("detail", String(500), nullable=True),
)

trust_list_meta = Table(
    "trust_list_meta",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("generated_at", UTC_DATETIME, nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("domain_count", Integer, nullable=False),
    Column("source", String(1000), nullable=True),
    Column("loaded_at", UTC_DATETIME, nullable=False),
)

trust_list_domains = Table(
    "trust_list_domains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(253), nullable=False, index=True),
    Column("description", String(1000), nullable=True),
    Column("operator_dn", String(1000), nullable=False),
    Column("updated_at", UTC_DATETIME, nullable=True),
)


# Failed logins per account and per source address (growing delays, temporary locks).
auth_throttle = Table(
    "auth_throttle",
    metadata,
    Column("key", String(400), primary_key=True),  # "account:<login>" | "source:<ip>"
    Column("failures", Integer, nullable=False, default=0),
    Column("first_failure_at", UTC_DATETIME, nullable=True),
    Column("last_failure_at", UTC_DATETIME, nullable=True),
    Column("locked_until", UTC_DATETIME, nullable=True),
)

# Machine credentials of APP mailboxes (R18): TLS client certificates and OAuth2 clients.
machine_credentials = Table(
    "machine_credentials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # certificate | oauth_client
    Column("fingerprint_sha256", String(64), nullable=True, unique=True),
    Column("subject_dn", String(1000), nullable=True),
    Column("client_id", String(100), nullable=True, unique=True),
    Column("secret_hash", Text, nullable=True),
    Column("description", String(255), nullable=True),
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("revoked_at", UTC_DATETIME, nullable=True),
)

# IMAP (issue 4): per-user \Seen on shared ORG mailboxes, expunge history for QRESYNC
# (RFC 7162 §3.2.5: VANISHED needs the UIDs removed since a MODSEQ), subscriptions.
user_seen = Table(
    "user_seen",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("modseq", BigInteger, nullable=False, default=1),
)

expunged = Table(
    "expunged",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("folder_id", Integer, ForeignKey("folders.id"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    Index("ix_expunged_folder_modseq", "folder_id", "modseq"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("name", String(512), primary_key=True),  # the IMAP name as the user sees it
)

# Web sessions (issue 3; SC.SSI/IE.58: locked after 2 hours of inactivity). Only the SHA-256
# of the session cookie is kept, never the cookie itself.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("id_nat_ps", String(32), nullable=True),
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("last_seen_at", UTC_DATETIME, nullable=False, index=True),
    Column("expires_at", UTC_DATETIME, nullable=False),
    Column("source", String(255), nullable=True),
)

# OIDC logins in progress (R61): state, nonce and PKCE verifier until the callback (10 min).
# `key` is the SHA-256 of the random key held by the browser's login cookie.
login_states = Table(
    "login_states",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("state", String(255), nullable=False),
    Column("nonce", String(255), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("created_at", UTC_DATETIME, nullable=False, index=True),
)

# Documents of received XDM packages (issue 6): one row per document of a message delivered
# to a local folder, to find a patient's documents (R43: the INS of METADATA.XML). A refused
# package gets one row with only its problems.
documents = Table(
    "documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "message_id",
        Integer,
        ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("folder_id", Integer, ForeignKey("folders.id"), nullable=False),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id"), nullable=False, index=True),
    Column("patient_ins", String(32), nullable=True, index=True),
    Column("patient_oid", String(64), nullable=True),
    Column("type_code", String(64), nullable=True),
    Column("type_display", String(255), nullable=True),
    Column("document_date", UTC_DATETIME, nullable=True),
    Column("title", String(500), nullable=True),
    Column("format_code", String(255), nullable=True),
    Column("problems", Text, nullable=False, default="[]"),  # JSON list of {code, message, where}
    Column("indexed_at", UTC_DATETIME, nullable=False),
)

# Tables of later features live in their own modules, registered on the same metadata.
from mssante.storage import (  # noqa: E402,F401
    schema_api,
    schema_directory,
    schema_directory_search,
    schema_publication,
    schema_webhooks,
)
