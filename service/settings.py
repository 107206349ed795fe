"""Configuration, read once from the environment (see `.env.example` and the README)."""

import os
from dataclasses import dataclass, field

import limits

MIN_SECRET_BYTES = 32


class ConfigError(Exception):
    """The environment cannot run the service; the message is the one line to print."""


def _is_rate(value: str) -> bool:
    try:
        limits.parse(value)
    except ValueError:
        return False
    return True


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str
    jwt_secret: str = field(default="", repr=False)
    jwt_jwks_url: str | None = None
    jwt_public_key_file: str | None = None
    jwt_jwks_cache_seconds: float = 300.0
    jwt_jwks_min_refresh_seconds: float = 30.0
    jwt_jwks_timeout_seconds: float = 5.0
    jwt_jwks_max_bytes: int = 65536
    jwt_jwks_max_keys: int = 50
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = 30
    db_pool_size: int = 10
    db_max_overflow: int = 0
    db_pool_recycle_seconds: int = 300
    db_pool_pre_ping: bool = True
    db_pgbouncer: bool = False
    db_connect_timeout_seconds: float = 5.0
    db_statement_timeout_seconds: float = 10.0
    wait_for_database: bool = False  # start on a database not yet reachable or migrated, answering 503 until it is
    cors_origins: tuple[str, ...] = ()
    validate_responses: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_enabled: bool = False
    # What one request may cost (README, "Limits"): checked before anything parses it.
    max_url_bytes: int = 8192
    max_query_parameters: int = 32
    max_header_bytes: int = 32768
    max_body_bytes: int = 65536
    max_json_depth: int = 32
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    rate_limit: str = "600/minute"
    auth_failure_rate_limit: str = "30/minute"
    rate_limit_storage_url: str = "memory://"
    rate_limit_max_keys: int = 100_000
    task_quota: int = 10_000
    idempotency_key_quota: int = 1_000
    max_connections: int = 1000
    # Safe writes and sync (README, "Retries, tabs and offline clients").
    require_if_match: bool = False
    idempotency_key_hours: float = 24.0
    tombstone_days: float = 30.0
    housekeeping_seconds: float = 300.0
    # Live updates (README, "Live updates"): streams of the change feed.
    db_listen_url: str | None = field(default=None, repr=False)
    stream_lifetime_seconds: float = 900.0
    stream_keepalive_seconds: float = 15.0
    streams_per_user: int = 10
    streams_per_worker: int = 1000
    live_poll_seconds: float = 0.25
    live_safety_poll_seconds: float = 1.0
    shutdown_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set: point it at a PostgreSQL database.")
        if not (self.jwt_secret or self.jwt_jwks_url or self.jwt_public_key_file):
            raise ConfigError(
                "Nothing verifies tokens: set JWT_JWKS_URL, JWT_PUBLIC_KEY_FILE or BETTER_AUTH_SECRET (or JWT_SECRET)."
            )
        if self.jwt_secret and len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"BETTER_AUTH_SECRET is shorter than {MIN_SECRET_BYTES} bytes: use a longer secret.")
        for name, value in {
            "RATE_LIMIT": self.rate_limit,
            "AUTH_FAILURE_RATE_LIMIT": self.auth_failure_rate_limit,
        }.items():
            if value != "off" and not _is_rate(value):
                raise ConfigError(f"{name}={value!r} is not a rate such as 600/minute (or off).")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        get = env.get
        try:
            values = dict(
                database_url=get("DATABASE_URL", ""),
                jwt_secret=get("BETTER_AUTH_SECRET") or get("JWT_SECRET", ""),
                jwt_jwks_url=get("JWT_JWKS_URL") or None,
                jwt_public_key_file=get("JWT_PUBLIC_KEY_FILE") or None,
                jwt_jwks_cache_seconds=float(get("JWT_JWKS_CACHE_SECONDS", "300")),
                jwt_jwks_min_refresh_seconds=float(get("JWT_JWKS_MIN_REFRESH_SECONDS", "30")),
                jwt_jwks_timeout_seconds=float(get("JWT_JWKS_TIMEOUT_SECONDS", "5")),
                jwt_jwks_max_bytes=int(get("JWT_JWKS_MAX_BYTES", "65536")),
                jwt_jwks_max_keys=int(get("JWT_JWKS_MAX_KEYS", "50")),
                jwt_issuer=get("JWT_ISSUER") or None,
                jwt_audience=get("JWT_AUDIENCE") or None,
                jwt_leeway_seconds=int(get("JWT_LEEWAY_SECONDS", "30")),
                db_pool_size=int(get("DB_POOL_SIZE", "10")),
                db_max_overflow=int(get("DB_MAX_OVERFLOW", "0")),
                db_pool_recycle_seconds=int(get("DB_POOL_RECYCLE_SECONDS", "300")),
                db_pool_pre_ping=_flag(get("DB_POOL_PRE_PING", "true")),
                db_pgbouncer=_flag(get("DB_PGBOUNCER", "false")),
                db_connect_timeout_seconds=float(get("DB_CONNECT_TIMEOUT_SECONDS", "5")),
                db_statement_timeout_seconds=float(get("DB_STATEMENT_TIMEOUT_SECONDS", "10")),
                wait_for_database=_flag(get("WAIT_FOR_DATABASE", "false")),
                cors_origins=tuple(o.strip() for o in get("CORS_ORIGINS", "").split(",") if o.strip()),
                validate_responses=_flag(get("VALIDATE_RESPONSES", "false")),
                log_level=get("LOG_LEVEL", "INFO").upper(),
                log_format=get("LOG_FORMAT", "text").strip().lower(),
                metrics_enabled=_flag(get("METRICS_ENABLED", "false")),
                max_url_bytes=int(get("MAX_URL_BYTES", "8192")),
                max_query_parameters=int(get("MAX_QUERY_PARAMETERS", "32")),
                max_header_bytes=int(get("MAX_HEADER_BYTES", "32768")),
                max_body_bytes=int(get("MAX_BODY_BYTES", "65536")),
                max_json_depth=int(get("MAX_JSON_DEPTH", "32")),
                header_timeout_seconds=float(get("HEADER_TIMEOUT_SECONDS", "10")),
                body_timeout_seconds=float(get("BODY_TIMEOUT_SECONDS", "30")),
                keep_alive_seconds=float(get("KEEP_ALIVE_SECONDS", "5")),
                rate_limit=get("RATE_LIMIT", "600/minute").strip().lower(),
                auth_failure_rate_limit=get("AUTH_FAILURE_RATE_LIMIT", "30/minute").strip().lower(),
                rate_limit_storage_url=get("RATE_LIMIT_STORAGE_URL", "memory://"),
                rate_limit_max_keys=int(get("RATE_LIMIT_MAX_KEYS", "100000")),
                task_quota=int(get("TASK_QUOTA", "10000")),
                idempotency_key_quota=int(get("IDEMPOTENCY_KEY_QUOTA", "1000")),
                max_connections=int(get("MAX_CONNECTIONS", "1000")),
                require_if_match=_flag(get("REQUIRE_IF_MATCH", "false")),
                idempotency_key_hours=float(get("IDEMPOTENCY_KEY_HOURS", "24")),
                tombstone_days=float(get("SYNC_TOMBSTONE_DAYS", "30")),
                housekeeping_seconds=float(get("HOUSEKEEPING_INTERVAL_SECONDS", "300")),
                db_listen_url=get("DB_LISTEN_URL") or None,
                stream_lifetime_seconds=float(get("STREAM_LIFETIME_SECONDS", "900")),
                stream_keepalive_seconds=float(get("STREAM_KEEPALIVE_SECONDS", "15")),
                streams_per_user=int(get("STREAMS_PER_USER", "10")),
                streams_per_worker=int(get("STREAMS_PER_WORKER", "1000")),
                live_poll_seconds=float(get("LIVE_POLL_SECONDS", "0.25")),
                live_safety_poll_seconds=float(get("LIVE_SAFETY_POLL_SECONDS", "1")),
                shutdown_timeout_seconds=float(get("SHUTDOWN_TIMEOUT_SECONDS", "10")),
            )
        except ValueError as error:
            raise ConfigError(f"A numeric setting is not a number: {error}") from None
        return cls(**{**values, **overrides})
