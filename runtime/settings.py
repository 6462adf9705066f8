"""Settings: read from the environment (and CLI flags) here and nowhere else."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from serviceorders.domain.policy import HEADER_FIELDS, Policy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

N = TypeVar("N", int, float)

DEFAULT_SQLITE_FILE = "serviceorders.db"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["postgres", "sqlite"]
    dbname: str
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    options: dict[str, str] = Field(default_factory=dict)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The database password never reaches logs or tracebacks.
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "password" and value else value)

    @classmethod
    def from_url(cls, url: str | None) -> DatabaseConfig:
        """Parse DATABASE_URL; unset means the SQLite file `./serviceorders.db`."""
        if not url:
            return cls(kind="sqlite", dbname=str(Path(DEFAULT_SQLITE_FILE).resolve()))
        parts = urlsplit(url)
        if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            return cls._postgres(url, parts)
        if parts.scheme == "sqlite":
            return cls._sqlite(url, parts)
        raise SettingsError(
            f"DATABASE_URL: unsupported scheme {parts.scheme!r} "
            "(use postgresql://, postgres://, postgresql+psycopg:// or sqlite:///)"
        )

    @classmethod
    def _postgres(cls, url: str, parts: object) -> DatabaseConfig:
        dbname = unquote(parts.path.lstrip("/"))  # type: ignore[attr-defined]
        if not dbname:
            raise SettingsError(f"DATABASE_URL: no database name in {redact(url)}")
        try:
            port = parts.port or 5432  # type: ignore[attr-defined]
        except ValueError as e:
            raise SettingsError(f"DATABASE_URL: bad port in {redact(url)}") from e
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}  # type: ignore[attr-defined]
        return cls(
            kind="postgres",
            dbname=dbname,
            host=unquote(parts.hostname or "localhost"),  # type: ignore[attr-defined]
            port=port,
            user=unquote(parts.username or "postgres"),  # type: ignore[attr-defined]
            password=unquote(parts.password or ""),  # type: ignore[attr-defined]
            options=options,
        )

    @classmethod
    def _sqlite(cls, url: str, parts: object) -> DatabaseConfig:
        # sqlite:///relative.db -> path "/relative.db"; sqlite:////abs.db -> "//abs.db"
        path = url[len("sqlite://") :]
        if not path.startswith("/") or len(path) < 2:
            raise SettingsError(
                f"DATABASE_URL: use sqlite:///relative.db or sqlite:////absolute.db, not {url!r}"
            )
        path = path[1:]
        return cls(
            kind="sqlite", dbname=str(Path(path).resolve()) if path != ":memory:" else ":memory:"
        )

    def url(self, *, with_password: bool = False) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.dbname}"
        # Percent-encode, so that the URL parses back to this config (from_url unquotes).
        password = quote(self.password, safe="") if with_password else "***"
        secret = f":{password}" if self.password else ""
        return (
            f"postgresql://{quote(self.user, safe='')}{secret}@{self.host}:{self.port}/"
            f"{quote(self.dbname, safe='')}"
        )


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


SECRET_FIELDS = frozenset({"api_keys", "audit_hmac_key", "audit_signing_key", "console_secret"})


class Settings(BaseModel):
    """Everything the engine can be told; see the settings table in README.md."""

    model_config = ConfigDict(frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # API keys never reach logs or tracebacks.
        for name, value in super().__repr_args__():
            if name == "kafka_options" and value:
                value = {k: ("***" if "password" in k else v) for k, v in value.items()}
            yield name, ("***" if name in SECRET_FIELDS and value else value)

    database: DatabaseConfig
    # Kafka (docs/kafka.md). No bootstrap servers: `serve` starts the embedded broker.
    kafka_bootstrap_servers: str | None = None
    consumer_group: str = Field(default="serviceorders", min_length=1)
    inbound_topic: str = Field(default="serviceorder.inbound", min_length=1)
    # TMF638 services to import (issue 20), consumed with the inbound topic (docs/kafka.md).
    inventory_topic: str = Field(default="serviceinventory.import", min_length=1)
    events_topic: str = Field(default="serviceorder.events", min_length=1)
    dlq_topic: str | None = None  # default: the inbound topic + ".dlq"
    # Days a dead letter that names no customer is kept (sealed under the month's
    # dead-letter key) before `dlq purge` (and `consume`, hourly) drops it (docs/kafka.md).
    dlq_retention_days: int = Field(default=30, ge=1, le=3650)
    topic_partitions: int = Field(default=3, ge=1, le=1000)
    topic_replication: int = Field(default=1, ge=1, le=10)
    consume_batch: int = Field(default=500, ge=1, le=10000)
    log_behind_policy: Literal["rewind", "stop"] = "rewind"
    # The codec of the batches the engine publishes (DLQ, refusals, notifications).
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    kafka_options: dict[str, str] = Field(default_factory=dict)  # TLS / SASL pass-through
    snapshot_interval: int = Field(default=50, ge=0)
    four_eyes: bool = True
    # Revisions after approval (docs/lifecycle.md, "Revisions after approval"): the header
    # attributes an approved order may change without a proposal (none by default), and
    # whether an inProgress order is held while its proposal waits.
    proposal_direct_fields: tuple[str, ...] = ()
    hold_on_proposal: bool = False
    # What a failed inventory check of a change or disconnect item does (domain/inventory.py,
    # docs/lifecycle.md "Services"): refuse the order naming the item, or flag it.
    inventory_check: Literal["refuse", "flag"] = "refuse"
    catalog_path: Path | None = None
    lock_timeout_seconds: int = Field(default=5, ge=1)
    # The longest one write transaction may run, the events-table lock included (PostgreSQL
    # statement and idle-in-transaction timeouts; docs/reliability.md, "Timeouts").
    write_timeout_seconds: int = Field(default=10, ge=1, le=3600)
    pool_size: int = Field(default=2, ge=1)
    pool_max_overflow: int = Field(default=4, ge=0)
    projection_batch_size: int = Field(default=500, ge=1, le=10000)
    # Orders the projector keeps, as folded, between pages (projections/log.py OrderCache;
    # 0: none): a page then reads no history of an order it kept.
    projection_cache_orders: int = Field(default=2000, ge=0, le=1_000_000)
    api_keys: str | None = None  # actor:role:key entries; never logged
    api_keys_file: Path | None = None
    public_base_url: str | None = None  # absolute hrefs behind a proxy
    # The HTTP server's deadlines for a slow client (docs/security.md, "Limits"): seconds to
    # send a request's head, then its body; then 408 and the connection is closed.
    http_header_timeout: float = Field(default=10.0, gt=0, le=3600)
    http_body_timeout: float = Field(default=30.0, gt=0, le=3600)
    # TMF641 hub: listeners and notification delivery (docs/notifications.md)
    hub_allowed_hosts: str = ""  # host / *.domain / address / CIDR [:port]; empty: public only
    hub_delivery: bool = True  # run the delivery worker in `serve` and `project`
    hub_timeout_seconds: float = Field(default=5.0, gt=0)
    hub_backoff_base_seconds: float = Field(default=1.0, gt=0)
    hub_backoff_max_seconds: float = Field(default=300.0, gt=0)
    hub_suspend_after_failures: int = Field(default=20, ge=0)  # 0: never by count
    hub_suspend_after_seconds: float = Field(default=3600.0, ge=0)  # 0: never by time
    hub_poll_seconds: float = Field(default=0.5, gt=0)
    hub_concurrency: int = Field(default=4, ge=1, le=64)
    hub_retention_hours: float = Field(default=24.0, ge=0)
    # Audit (docs/audit.md): checkpoints signed with this key when set; never logged
    audit_hmac_key: str | None = None
    # Checkpoints signed (Ed25519) with the private key in this PKCS#8 PEM file; its path
    # is never logged (docs/audit.md, "Signing keys")
    audit_signing_key: Path | None = None
    audit_checkpoint_interval: float = Field(default=300.0, gt=0)
    # Where every fresh checkpoint is also appended (docs/audit.md, "Anchors"):
    # `file:/path` or `kafka:<topic>`; unset: nowhere outside the database.
    audit_anchor: str | None = None
    # Web console (docs/console.md): signs its session cookies; unset, a random secret per
    # process (sessions end on restart and hold on one process only). Never logged.
    console_secret: str | None = Field(default=None, min_length=32)
    # A console session ends after this long without a request (sliding), and 8 h after
    # sign-in whatever happens; fractions allowed (0.05 = 3 s).
    console_idle_minutes: float = Field(default=30.0, gt=0, le=480)
    # Logs of serve / api / consume / project (docs/operations.md, "Logs")
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False  # one INFO record per HTTP request
    # Metrics and health of `consume` and `project` (docs/operations.md): off when no port
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = Field(default="127.0.0.1", min_length=1)

    @field_validator("proposal_direct_fields")
    @classmethod
    def _header_attributes(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(names) - HEADER_FIELDS)
        if unknown:
            raise ValueError(
                f"not header attributes: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(HEADER_FIELDS))})"
            )
        return tuple(dict.fromkeys(names))

    @field_validator("audit_anchor")
    @classmethod
    def _anchor(cls, value: str | None) -> str | None:
        if value is not None:
            parse_anchor(value)
        return value

    def policy(self) -> Policy:
        """The review policies the application applies (domain/policy.py)."""
        return Policy(
            four_eyes=self.four_eyes,
            direct_fields=frozenset(self.proposal_direct_fields),
            hold_on_proposal=self.hold_on_proposal,
        )

    def signing_key(self) -> Ed25519PrivateKey | None:
        """The checkpoints' Ed25519 signing key (SERVICEORDERS_AUDIT_SIGNING_KEY), read from
        its file now; a SettingsError (one line) when it cannot be read or is not one."""
        if self.audit_signing_key is None:
            return None
        from serviceorders.support.signing import KeyFileError, load_private_key

        try:
            return load_private_key(self.audit_signing_key)
        except KeyFileError as e:
            raise SettingsError(f"SERVICEORDERS_AUDIT_SIGNING_KEY: {e}") from None

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.inbound_topic}.dlq"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "database": DatabaseConfig.from_url(env.get("DATABASE_URL")),
            "kafka_bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            "consumer_group": env.get("SERVICEORDERS_CONSUMER_GROUP") or "serviceorders",
            "inbound_topic": env.get("SERVICEORDERS_INBOUND_TOPIC") or "serviceorder.inbound",
            "inventory_topic": env.get("SERVICEORDERS_INVENTORY_TOPIC")
            or "serviceinventory.import",
            "events_topic": env.get("SERVICEORDERS_EVENTS_TOPIC") or "serviceorder.events",
            "dlq_topic": env.get("SERVICEORDERS_DLQ_TOPIC") or None,
            "dlq_retention_days": _int(env, "SERVICEORDERS_DLQ_RETENTION_DAYS", 30),
            "topic_partitions": _int(env, "SERVICEORDERS_TOPIC_PARTITIONS", 3),
            "topic_replication": _int(env, "SERVICEORDERS_TOPIC_REPLICATION", 1),
            "consume_batch": _int(env, "SERVICEORDERS_CONSUME_BATCH", 500),
            "log_behind_policy": env.get("SERVICEORDERS_LOG_BEHIND_POLICY") or "rewind",
            "kafka_compression": env.get("SERVICEORDERS_KAFKA_COMPRESSION") or "none",
            "kafka_options": kafka_options(env),
            "snapshot_interval": _int(env, "SERVICEORDERS_SNAPSHOT_INTERVAL", 50),
            "four_eyes": _bool(env, "SERVICEORDERS_FOUR_EYES", True),
            "proposal_direct_fields": _names(env, "SERVICEORDERS_PROPOSAL_DIRECT_FIELDS"),
            "hold_on_proposal": _bool(env, "SERVICEORDERS_HOLD_ON_PROPOSAL", False),
            "inventory_check": env.get("SERVICEORDERS_INVENTORY_CHECK", "refuse"),
            "catalog_path": env.get("SERVICEORDERS_CATALOG") or None,
            "lock_timeout_seconds": _int(env, "SERVICEORDERS_DB_LOCK_TIMEOUT", 5),
            "write_timeout_seconds": _int(env, "SERVICEORDERS_DB_WRITE_TIMEOUT", 10),
            "pool_size": _int(env, "SERVICEORDERS_DB_POOL_SIZE", 2),
            "projection_batch_size": _int(env, "SERVICEORDERS_PROJECTION_BATCH", 500),
            "projection_cache_orders": _int(env, "SERVICEORDERS_PROJECTION_CACHE", 2000),
            "api_keys": env.get("SERVICEORDERS_API_KEYS") or None,
            "api_keys_file": env.get("SERVICEORDERS_API_KEYS_FILE") or None,
            "public_base_url": env.get("SERVICEORDERS_PUBLIC_URL") or None,
            "http_header_timeout": _float(env, "SERVICEORDERS_HTTP_HEADER_TIMEOUT", 10.0),
            "http_body_timeout": _float(env, "SERVICEORDERS_HTTP_BODY_TIMEOUT", 30.0),
            "hub_allowed_hosts": env.get("SERVICEORDERS_HUB_ALLOWED_HOSTS", ""),
            "hub_delivery": _bool(env, "SERVICEORDERS_HUB_DELIVERY", True),
            "hub_timeout_seconds": _float(env, "SERVICEORDERS_HUB_TIMEOUT", 5.0),
            "hub_backoff_base_seconds": _float(env, "SERVICEORDERS_HUB_BACKOFF_BASE", 1.0),
            "hub_backoff_max_seconds": _float(env, "SERVICEORDERS_HUB_BACKOFF_MAX", 300.0),
            "hub_suspend_after_failures": _int(env, "SERVICEORDERS_HUB_SUSPEND_AFTER_FAILURES", 20),
            "hub_suspend_after_seconds": _float(
                env, "SERVICEORDERS_HUB_SUSPEND_AFTER_SECONDS", 3600.0
            ),
            "hub_poll_seconds": _float(env, "SERVICEORDERS_HUB_POLL", 0.5),
            "hub_concurrency": _int(env, "SERVICEORDERS_HUB_CONCURRENCY", 4),
            "hub_retention_hours": _float(env, "SERVICEORDERS_HUB_RETENTION_HOURS", 24.0),
            "audit_hmac_key": env.get("SERVICEORDERS_AUDIT_HMAC_KEY") or None,
            "audit_signing_key": env.get("SERVICEORDERS_AUDIT_SIGNING_KEY") or None,
            "audit_checkpoint_interval": _float(
                env, "SERVICEORDERS_AUDIT_CHECKPOINT_INTERVAL", 300.0
            ),
            "audit_anchor": env.get("SERVICEORDERS_AUDIT_ANCHOR") or None,
            "console_secret": env.get("SERVICEORDERS_CONSOLE_SECRET") or None,
            "console_idle_minutes": _float(env, "SERVICEORDERS_CONSOLE_IDLE_MINUTES", 30.0),
            "log_level": (env.get("SERVICEORDERS_LOG_LEVEL") or "INFO").upper(),
            "log_format": (env.get("SERVICEORDERS_LOG_FORMAT") or "text").lower(),
            "access_log": _bool(env, "SERVICEORDERS_ACCESS_LOG", False),
            "metrics_port": _int(env, "SERVICEORDERS_METRICS_PORT", 0) or None,
            "metrics_host": env.get("SERVICEORDERS_METRICS_HOST") or "127.0.0.1",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls.model_validate(values)
        except ValidationError as e:  # name the variable, not the field
            first = e.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            variable = ENV_NAMES.get(field, field)
            raw = env.get(variable)
            secret = "password" in variable.lower() or "secret" in variable.lower()
            shown = "" if raw is None or secret else f" (got {raw!r})"
            raise SettingsError(f"{variable}: {first['msg']}{shown}") from None
        anchor = settings.audit_anchor
        if anchor and parse_anchor(anchor)[0] == "kafka" and not settings.kafka_bootstrap_servers:
            raise SettingsError(
                f"SERVICEORDERS_AUDIT_ANCHOR: {anchor!r} needs KAFKA_BOOTSTRAP_SERVERS (an "
                "anchor on the embedded broker would be lost when the process stops)"
            )
        if settings.audit_signing_key is not None:  # refused at start, not at a checkpoint
            settings.signing_key()
        if settings.hub_allowed_hosts:  # refused at start, not at the first registration
            from serviceorders.support.hosts import AllowList

            try:
                AllowList.parse(settings.hub_allowed_hosts)
            except ValueError as e:
                raise SettingsError(str(e)) from None
        return settings


# A Kafka topic name (as Kafka itself allows it).
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def parse_anchor(value: str) -> tuple[Literal["file", "kafka"], str]:
    """An audit anchor (SERVICEORDERS_AUDIT_ANCHOR, `audit verify --anchor`):
    `file:/path` -> ("file", path), `kafka:<topic>` -> ("kafka", topic); ValueError naming
    the forms otherwise."""
    kind, _, rest = value.partition(":")
    if kind == "file" and rest.strip():
        return "file", rest
    if kind == "kafka" and _TOPIC.fullmatch(rest) and rest not in (".", ".."):
        return "kafka", rest
    raise ValueError(
        "not an anchor: use file:/path/to/anchor.jsonl or kafka:<topic> (a topic of "
        "letters, digits, '.', '_' and '-')"
    )


# Kafka client settings taken from the environment as they are (TLS and SASL): variable
# -> kafka-python option. Their values are never logged.
KAFKA_PASSTHROUGH = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
    "KAFKA_SSL_CERTFILE": "ssl_certfile",
    "KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "KAFKA_SSL_PASSWORD": "ssl_password",
    "KAFKA_SSL_CHECK_HOSTNAME": "ssl_check_hostname",
    "KAFKA_CLIENT_ID": "client_id",
}


def kafka_options(env: Mapping[str, str]) -> dict[str, str]:
    return {option: env[name] for name, option in KAFKA_PASSTHROUGH.items() if env.get(name)}


# Settings field -> the environment variable that sets it (for error messages).
ENV_NAMES = {
    "database": "DATABASE_URL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "consumer_group": "SERVICEORDERS_CONSUMER_GROUP",
    "inbound_topic": "SERVICEORDERS_INBOUND_TOPIC",
    "inventory_topic": "SERVICEORDERS_INVENTORY_TOPIC",
    "events_topic": "SERVICEORDERS_EVENTS_TOPIC",
    "dlq_topic": "SERVICEORDERS_DLQ_TOPIC",
    "dlq_retention_days": "SERVICEORDERS_DLQ_RETENTION_DAYS",
    "topic_partitions": "SERVICEORDERS_TOPIC_PARTITIONS",
    "topic_replication": "SERVICEORDERS_TOPIC_REPLICATION",
    "consume_batch": "SERVICEORDERS_CONSUME_BATCH",
    "log_behind_policy": "SERVICEORDERS_LOG_BEHIND_POLICY",
    "kafka_compression": "SERVICEORDERS_KAFKA_COMPRESSION",
    "snapshot_interval": "SERVICEORDERS_SNAPSHOT_INTERVAL",
    "four_eyes": "SERVICEORDERS_FOUR_EYES",
    "proposal_direct_fields": "SERVICEORDERS_PROPOSAL_DIRECT_FIELDS",
    "hold_on_proposal": "SERVICEORDERS_HOLD_ON_PROPOSAL",
    "inventory_check": "SERVICEORDERS_INVENTORY_CHECK",
    "catalog_path": "SERVICEORDERS_CATALOG",
    "lock_timeout_seconds": "SERVICEORDERS_DB_LOCK_TIMEOUT",
    "write_timeout_seconds": "SERVICEORDERS_DB_WRITE_TIMEOUT",
    "pool_size": "SERVICEORDERS_DB_POOL_SIZE",
    "projection_batch_size": "SERVICEORDERS_PROJECTION_BATCH",
    "projection_cache_orders": "SERVICEORDERS_PROJECTION_CACHE",
    "api_keys": "SERVICEORDERS_API_KEYS",
    "api_keys_file": "SERVICEORDERS_API_KEYS_FILE",
    "public_base_url": "SERVICEORDERS_PUBLIC_URL",
    "http_header_timeout": "SERVICEORDERS_HTTP_HEADER_TIMEOUT",
    "http_body_timeout": "SERVICEORDERS_HTTP_BODY_TIMEOUT",
    "hub_allowed_hosts": "SERVICEORDERS_HUB_ALLOWED_HOSTS",
    "hub_delivery": "SERVICEORDERS_HUB_DELIVERY",
    "hub_timeout_seconds": "SERVICEORDERS_HUB_TIMEOUT",
    "hub_backoff_base_seconds": "SERVICEORDERS_HUB_BACKOFF_BASE",
    "hub_backoff_max_seconds": "SERVICEORDERS_HUB_BACKOFF_MAX",
    "hub_suspend_after_failures": "SERVICEORDERS_HUB_SUSPEND_AFTER_FAILURES",
    "hub_suspend_after_seconds": "SERVICEORDERS_HUB_SUSPEND_AFTER_SECONDS",
    "hub_poll_seconds": "SERVICEORDERS_HUB_POLL",
    "hub_concurrency": "SERVICEORDERS_HUB_CONCURRENCY",
    "hub_retention_hours": "SERVICEORDERS_HUB_RETENTION_HOURS",
    "audit_hmac_key": "SERVICEORDERS_AUDIT_HMAC_KEY",
    "audit_signing_key": "SERVICEORDERS_AUDIT_SIGNING_KEY",
    "audit_checkpoint_interval": "SERVICEORDERS_AUDIT_CHECKPOINT_INTERVAL",
    "audit_anchor": "SERVICEORDERS_AUDIT_ANCHOR",
    "console_secret": "SERVICEORDERS_CONSOLE_SECRET",
    "console_idle_minutes": "SERVICEORDERS_CONSOLE_IDLE_MINUTES",
    "log_level": "SERVICEORDERS_LOG_LEVEL",
    "log_format": "SERVICEORDERS_LOG_FORMAT",
    "access_log": "SERVICEORDERS_ACCESS_LOG",
    "metrics_port": "SERVICEORDERS_METRICS_PORT",
    "metrics_host": "SERVICEORDERS_METRICS_HOST",
}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parsed(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parsed(env, name, default, float, "a number")


def _parsed(
    env: Mapping[str, str], name: str, default: N, parse: Callable[[str], N], what: str
) -> N:
    """`parse` of the variable `name`, `default` when unset or empty; a SettingsError
    naming it (`NAME must be <what>, not 'x'`) when it does not parse."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, not {raw!r}") from None


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list (blanks around the commas ignored), () when unset or empty."""
    raw = env.get(name) or ""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    if raw.lower() in ("1", "y", "yes", "true", "on"):
        return True
    if raw.lower() in ("0", "n", "no", "false", "off"):
        return False
    raise SettingsError(f"{name} must be yes or no, not {raw!r}")
