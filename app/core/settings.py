"""Process configuration, read from the environment (and a `.env` file when present)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Where the embedded PostgreSQL/Redis and generated keys live when no server URLs are given.
    data_dir: Path = Field(default=Path(".data"), validation_alias="CARELOOP_DATA_DIR")
    # postgresql://user@host:port/db — the user owns the schema (runs migrations); request
    # transactions drop to the non-owner role `db_app_role`, which row-level security applies to.
    database_url: str | None = None
    db_app_role: str = "careloop_app"
    # Production: request and job transactions connect as this non-owner LOGIN role (a member of
    # db_app_role), so no statement can leave row-level security. Unset: the owner connection switches
    # role per transaction (development). Embedded mode creates and uses such a role by itself.
    app_database_url: str | None = None
    db_pool_size: int = 10
    db_max_overflow: int = 20
    redis_url: str | None = None
    # Prefix for every Redis key and the arq queue, so several deployments (or test runs) share one Redis.
    redis_prefix: str = "careloop"

    host: str = "127.0.0.1"
    port: int = 8000
    environment: str = "development"
    log_level: str = "INFO"
    log_json: bool = True
    # In-process worker for `careloop serve`; on by default in embedded mode.
    embedded_worker: bool | None = None

    # JWT: RS256 with this PEM key (or file); generated under data_dir when absent (development only).
    jwt_private_key: str | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "careloop"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    integration_token_ttl_seconds: int = 3600

    # Failed-login lock-out: this many failures within the window locks the account (and the IP) out.
    login_max_failures: int = 5
    login_failure_window_seconds: int = 900

    max_request_body_bytes: int = 1_048_576
    idempotency_ttl_hours: int = 24

    # Outbox relay and jobs.
    outbox_poll_seconds: float = 2.0
    outbox_batch_size: int = 200
    job_max_attempts: int = 6
    job_backoff_base_seconds: float = 5.0
    job_backoff_max_seconds: float = 3600.0

    # GraphQL limits.
    graphql_max_depth: int = 8
    graphql_max_tokens: int = 2000
    graphql_max_aliases: int = 30

    # Personal data encryption (phone, ID number): "kid:base64key,kid2:base64key" (32-byte AES keys);
    # the first encrypts, all decrypt, so keys rotate by prepending a new one. Generated under
    # data_dir when absent (development only), like the JWT key.
    field_encryption_keys: str | None = None
    # HMAC key for blind indexes (exact lookup of encrypted values); never rotated casually.
    blind_index_key: str | None = None

    # Member import: the largest file accepted, and the most rows.
    import_max_bytes: int = 10 * 1024 * 1024
    import_max_rows: int = 20_000

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
