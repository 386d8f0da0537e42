"""Settings from the environment (12-factor), validated once at start.

Every process reads the same ``ADX_*`` variables. A bad value stops the process at start
with a message that names the variable, rather than failing later in a request.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MEDIA_RANGE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,62}/(\*|[a-z0-9][a-z0-9.+-]{0,126})$")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class NotifyProvider(StrEnum):
    SMTP = "smtp"
    WEBHOOK = "webhook"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class StorageKind(StrEnum):
    LOCAL = "local"
    S3 = "s3"
    GCS = "gcs"
    AZURE = "azure"


class ScannerKind(StrEnum):
    CLAMD = "clamd"
    # Development only: knows the EICAR test string and nothing else; refused in production.
    EICAR = "eicar"


class ThumbnailFormat(StrEnum):
    WEBP = "webp"
    PNG = "png"


class PaymentProvider(StrEnum):
    MANUAL = "manual"
    STRIPE = "stripe"


class SettingsError(RuntimeError):
    """Raised when the environment does not describe a runnable configuration."""


def parse_codec_keys(raw: str) -> dict[str, bytes]:
    """Parse ``kid:base64key,kid2:base64key`` into key ids and 256-bit AES keys."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        if not sep or not kid or not encoded:
            raise ValueError("each codec key must be written as <key id>:<base64 key>")
        if not kid.replace("-", "").replace("_", "").isalnum() or len(kid) > 32:
            raise ValueError(f"codec key id {kid!r} must be 1-32 letters, digits, '-' or '_'")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"codec key {kid!r} is not valid base64") from exc
        if len(key) != 32:
            raise ValueError(f"codec key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if kid in keys:
            raise ValueError(f"codec key id {kid!r} appears twice")
        keys[kid] = key
    return keys


class Settings(BaseSettings):
    """The whole configuration of an ADX process."""

    model_config = SettingsConfigDict(env_prefix="ADX_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    # PostgreSQL. The application connects as a non-superuser role that RLS applies to;
    # migrations run as the owner and create that role.
    database_url: SecretStr = SecretStr("postgresql+asyncpg://adx_app:adx_app@127.0.0.1:5432/adx")
    migration_database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=200)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    task_queue_prefix: str = ""

    # Payload encryption: ``kid:base64key`` pairs; the active id encrypts, every id decrypts.
    # repr=False: the raw keys must not show when settings are printed or logged.
    codec_keys: Annotated[dict[str, bytes], NoDecode] = Field(default_factory=dict, repr=False)
    codec_active_key_id: str | None = None
    # Browser origins (the Temporal UI) allowed to call the codec server, comma-separated.
    codec_allowed_origins: Annotated[tuple[str, ...], NoDecode] = (
        "http://127.0.0.1:8233",
        "http://localhost:8233",
    )

    # Authentication
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "adx-core"
    jwt_audience: str = "adx-api"
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    token_ttl_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    # Tokens from an identity provider: its signing keys as a JWKS URL (fetched, cached and
    # re-fetched when a token names an unknown key id, which is how rotation shows) and/or
    # a JWKS file (a mounted Secret, re-read when it changes). Tokens ADX mints itself
    # (``adx token``, tenant switches, stream tokens) stay HS256 under ADX_JWT_SECRET.
    jwt_jwks_url: str | None = None
    jwt_keys_file: Path | None = None
    jwt_jwks_cache_seconds: int = Field(default=300, ge=5, le=86_400)
    # The issuer of identity-provider tokens, when it differs from ADX_JWT_ISSUER.
    jwt_external_issuer: str | None = None
    # An EventSource cannot send Authorization; it gets a token for one operation's events.
    stream_token_ttl_seconds: int = Field(default=300, ge=10, le=3600)

    # HTTP
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = Field(default=8090, ge=0, le=65535)
    # Worker Versioning: with a build id (the image tag, set by the chart), every worker
    # joins the Worker Deployment adx-<service> as that version, short workflows pin to the
    # version that started them and monitoring moves to the current one. Unset (make dev, a
    # single unversioned fleet), workers poll their task queues as plain workers.
    worker_build_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # The operator (`adx operator`): its probes and metrics, how often it mirrors a
    # resource with a workflow in flight, how often it re-checks settled ones for drift,
    # the namespaces it watches (empty: the whole cluster), and its peering: replicas with
    # the same peering name elect one active operator. The peering object (a
    # ClusterKopfPeering, or a KopfPeering in each watched namespace) must exist, or the
    # operator waits for it; "" runs standalone, for a single replica.
    operator_http_host: str = "127.0.0.1"
    operator_http_port: int = Field(default=8095, ge=0, le=65535)
    operator_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    operator_resync_seconds: float = Field(default=60.0, gt=0, le=3600)
    operator_namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    operator_peering: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9.-]{0,251})?$")
    # Browser origins of the frontends allowed to call the API (CORS), comma-separated.
    cors_allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Per-tenant request budget: this many requests per window, then 429 with Retry-After.
    # Counted in Redis when ADX_REDIS_URL is set (shared by every API replica), else per
    # process. 0 turns the limit off.
    rate_limit_requests: int = Field(default=1200, ge=0, le=1_000_000)
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    # How long a POST's Idempotency-Key keeps answering with the original result.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # Server-Sent Events: the keep-alive comment interval, and how often an operation's
    # shared watch re-checks a workflow when no history event has woken it.
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)
    sse_fallback_poll_seconds: float = Field(default=2.0, gt=0, le=60)

    # Storage. Each tenant lives under tenants/<tenant id>/ in the provider named by
    # ADX_STORAGE_PROVIDER (new tenants) or in the one its last migration moved it to.
    # Every provider whose settings are present can be a migration source or target.
    # Credentials come from the environment or from files in ADX_SECRETS_DIR (mounted
    # Secrets), are SecretStr, and never reach a log line.
    storage_provider: StorageKind = StorageKind.LOCAL
    storage_root: Path = Path(".adx/storage")
    storage_part_size: int = Field(
        default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024
    )
    storage_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    s3_endpoint: str | None = None  # host[:port]; unset means AWS S3
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_secure: bool = True
    s3_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ADX_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
    )
    s3_secret_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ADX_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
    )
    gcs_bucket: str | None = None
    gcs_project: str | None = None
    # An emulator's URL; real GCS takes its credentials from GOOGLE_APPLICATION_CREDENTIALS.
    gcs_endpoint: str | None = None
    azure_container: str | None = None
    azure_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ADX_AZURE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"
        ),
    )
    azure_account_url: str | None = None
    azure_account_key: SecretStr | None = None

    # Virus scanning. clamd listens on host:port, or on a Unix socket ("unix:/path"). A
    # file larger than scan_max_bytes is rejected, never passed as clean: keep it at or
    # below clamd's StreamMaxLength, MaxScanSize and MaxFileSize (and run clamd with
    # AlertExceedsMax yes, so that a limit clamd hits is reported, not skipped).
    scanner: ScannerKind = ScannerKind.CLAMD
    clamd_address: str = "127.0.0.1:3310"
    scan_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    scan_max_bytes: int = Field(default=100 * 1024**2, ge=1024, le=4 * 1024**3 - 1)

    # Uploads and what file_upload_workflow does with them.
    # A resumable upload keeps what arrived in segments of this size: a dropped connection
    # loses at most one segment.
    upload_segment_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=512 * 1024 * 1024)
    # An unfinished resumable upload is kept this long after its last write.
    upload_session_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 86_400)
    # Types a tenant may upload unless its settings narrow them ("image/*" matches a family).
    upload_allowed_types: Annotated[tuple[str, ...], NoDecode] = (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/json",
        "application/zip",
        "application/octet-stream",
    )
    thumbnail_sizes: Annotated[tuple[int, ...], NoDecode] = (128, 512)
    thumbnail_format: ThumbnailFormat = ThumbnailFormat.WEBP
    # Thumbnails, metadata and analysis together get this long; a late step is left to
    # file_processing_workflow and the upload completes without it.
    processing_deadline_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Larger files are stored and scanned but not opened for thumbnails or analysis.
    processing_max_bytes: int = Field(default=100 * 1024**2, ge=1024)
    # Decompression-bomb limits, checked before anything is decoded.
    max_image_pixels: int = Field(default=40_000_000, ge=10_000, le=1_000_000_000)
    archive_max_entries: int = Field(default=10_000, ge=1, le=1_000_000)
    archive_max_bytes: int = Field(default=1024**3, ge=1024)
    archive_max_ratio: int = Field(default=100, ge=2, le=10_000)
    archive_max_depth: int = Field(default=3, ge=1, le=10)
    # The content analyzer: empty for the built-in one (colours, language, keywords), or
    # "package.module:ClassName" for a heavier one installed alongside.
    analyzer: str | None = None

    # Notifications (welcome, invitations, quota alerts): SMTP or a signed webhook.
    notify_provider: NotifyProvider = NotifyProvider.SMTP
    notify_from: str = "ADX Core <noreply@adx.local>"
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    notify_webhook_url: str | None = None
    notify_webhook_secret: SecretStr | None = None

    # Payments for plan upgrades: ``manual`` (development, invoicing) or Stripe.
    payment_provider: PaymentProvider = PaymentProvider.MANUAL
    stripe_api_key: SecretStr | None = None
    # Only to point the SDK at another endpoint (a test server); Stripe's own by default.
    stripe_api_base: str | None = None

    # The tenant-context cache: Redis when set (REDIS_URL or ADX_REDIS_URL), else in-process.
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ADX_REDIS_URL", "REDIS_URL", "redis_url")
    )
    tenant_context_ttl_seconds: int = Field(default=60, ge=1, le=3600)

    # How often tenant_monitoring_workflow samples usage, unless a tenant's run says otherwise.
    monitoring_interval_seconds: int = Field(default=300, ge=10, le=86_400)

    # Telemetry: OTLP is on only when an endpoint is set (OTEL_* variables also apply).
    otlp_endpoint: str | None = None
    service_name: str = "adx-core"

    @field_validator("codec_keys", mode="before")
    @classmethod
    def _parse_codec_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_codec_keys(value)
        return value

    @field_validator(
        "codec_allowed_origins", "cors_allowed_origins", "operator_namespaces", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @field_validator("upload_allowed_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip().lower() for item in value.split(",") if item.strip())
        return value

    @field_validator("upload_allowed_types")
    @classmethod
    def _valid_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _MEDIA_RANGE.match(item):
                raise ValueError(f"{item!r} is not a media type such as image/png or image/*")
        return value

    @field_validator("thumbnail_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(int(item) for item in value.split(",") if item.strip())
            except ValueError:
                raise ValueError("must be comma-separated pixel sizes, such as 128,512") from None
        return value

    @field_validator("thumbnail_sizes")
    @classmethod
    def _valid_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not 1 <= len(value) <= 6 or len(set(value)) != len(value):
            raise ValueError("give one to six distinct sizes")
        if any(not 16 <= size <= 2048 for size in value):
            raise ValueError("each size must be 16 to 2048 pixels")
        return tuple(sorted(value))

    @field_validator("clamd_address")
    @classmethod
    def _valid_clamd_address(cls, value: str) -> str:
        if value.startswith("unix:"):
            if not value[5:].startswith("/"):
                raise ValueError("a Unix socket must be written unix:/absolute/path")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port or unix:/path/to/socket")
        return value

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _valid_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError as exc:
            raise ValueError("is not a database URL") from exc
        if not url.drivername.startswith("postgresql"):
            raise ValueError("must be a postgresql URL")
        if url.username and not _ROLE_NAME.match(url.username):
            # The role name is written into DDL by the migrations; keep it plain.
            raise ValueError("the user name must be a plain role name ([a-z_][a-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.codec_keys:
            active = self.codec_active_key_id or next(iter(self.codec_keys))
            if active not in self.codec_keys:
                raise ValueError(f"ADX_CODEC_ACTIVE_KEY_ID={active!r} is not among ADX_CODEC_KEYS")
            object.__setattr__(self, "codec_active_key_id", active)
        if bool(self.temporal_tls_cert) != bool(self.temporal_tls_key):
            raise ValueError("ADX_TEMPORAL_TLS_CERT and ADX_TEMPORAL_TLS_KEY go together")
        if self.env is Environment.PRODUCTION:
            missing = [
                name
                for name, present in (
                    ("ADX_CODEC_KEYS", bool(self.codec_keys)),
                    ("ADX_JWT_SECRET", self.jwt_secret is not None),
                )
                if not present
            ]
            if missing:
                raise ValueError(f"production needs {', '.join(missing)}")
        if self.payment_provider is PaymentProvider.STRIPE and self.stripe_api_key is None:
            raise ValueError("ADX_PAYMENT_PROVIDER=stripe needs ADX_STRIPE_API_KEY")
        if self.notify_provider is NotifyProvider.WEBHOOK and not self.notify_webhook_url:
            raise ValueError("ADX_NOTIFY_PROVIDER=webhook needs ADX_NOTIFY_WEBHOOK_URL")
        self._check_storage()
        if self.env is Environment.PRODUCTION and self.scanner is ScannerKind.EICAR:
            raise ValueError(
                "ADX_SCANNER=eicar only knows the EICAR test string; production needs clamd"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("ADX_JWT_SECRET must be at least 32 characters")
        if self.jwt_jwks_url:
            if not self.jwt_jwks_url.startswith(("https://", "http://")):
                raise ValueError("ADX_JWT_JWKS_URL must be an https:// (or http://) URL")
            # Whoever alters the key set in transit can mint any identity: TLS in production.
            if self.env is Environment.PRODUCTION and not self.jwt_jwks_url.startswith("https://"):
                raise ValueError("ADX_JWT_JWKS_URL must use https:// in production")
        return self

    def _check_storage(self) -> None:
        missing = self.storage_missing(self.storage_provider)
        if missing:
            raise ValueError(
                f"ADX_STORAGE_PROVIDER={self.storage_provider.value} needs {', '.join(missing)}"
            )

    def storage_missing(self, kind: StorageKind) -> list[str]:
        """The settings a provider still needs; empty when it is configured."""
        needed: dict[StorageKind, tuple[tuple[str, bool], ...]] = {
            StorageKind.LOCAL: (),
            StorageKind.S3: (
                ("ADX_S3_BUCKET", bool(self.s3_bucket)),
                ("ADX_S3_ACCESS_KEY", self.s3_access_key is not None),
                ("ADX_S3_SECRET_KEY", self.s3_secret_key is not None),
            ),
            StorageKind.GCS: (("ADX_GCS_BUCKET", bool(self.gcs_bucket)),),
            StorageKind.AZURE: (
                ("ADX_AZURE_CONTAINER", bool(self.azure_container)),
                (
                    "ADX_AZURE_CONNECTION_STRING, or ADX_AZURE_ACCOUNT_URL and _ACCOUNT_KEY",
                    self.azure_connection_string is not None
                    or bool(self.azure_account_url and self.azure_account_key),
                ),
            ),
        }
        return [name for name, present in needed[kind] if not present]

    @property
    def storage_kinds(self) -> tuple[StorageKind, ...]:
        """Every provider whose settings are complete."""
        return tuple(kind for kind in StorageKind if not self.storage_missing(kind))

    @property
    def app_role(self) -> str:
        """The database role the application connects as; migrations create it."""
        return make_url(self.database_url.get_secret_value()).username or "adx_app"

    @property
    def clamd_endpoint(self) -> tuple[str, int] | str:
        """(host, port) for TCP, or the path of clamd's Unix socket."""
        if self.clamd_address.startswith("unix:"):
            return self.clamd_address[5:]
        host, _, port = self.clamd_address.rpartition(":")
        return host.strip("[]"), int(port)

    def task_queue(self, domain: str) -> str:
        return f"{self.task_queue_prefix}{domain}"


def load_settings() -> Settings:
    """Read and validate the environment, turning pydantic's report into one clear error."""
    # Mounted Secrets: one file per setting, named like the variable (adx_s3_secret_key).
    secrets_dir = os.environ.get("ADX_SECRETS_DIR")
    try:
        if secrets_dir:
            return Settings(_secrets_dir=secrets_dir)
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            name = f"ADX_{field.upper()}" if field != "settings" else "settings"
            lines.append(f"  {name}: {error['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
