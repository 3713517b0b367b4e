"""Process configuration, read from the environment (and a `.env` file when present)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProductionMisconfigured(RuntimeError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("ENVIRONMENT=production refuses to start:\n" + "\n".join(f"- {p}" for p in problems))


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
    # Together the most connections a process opens for request and job transactions (app/core/db.py).
    db_pool_size: int = 25
    db_max_overflow: int = 10
    # FastAPI's native OpenTelemetry (spans, metrics, logs through the globally configured providers). Off,
    # it is not even asked whether a provider is configured: that look-up costs ~6 % of a small request.
    telemetry_enabled: bool = False
    redis_url: str | None = None
    # Prefix for every Redis key and the arq queue, so several deployments (or test runs) share one Redis.
    redis_prefix: str = "careloop"

    host: str = "127.0.0.1"
    port: int = 8000
    # `production` makes a misconfiguration fatal at start-up instead of quietly convenient: no generated
    # keys, no embedded PostgreSQL or Redis, no plain-http webhooks (see `production_problems`).
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
    # Ended sign-ins are read from PostgreSQL into each process this often (the bound on how long a logout
    # takes to reach the other processes); with older knowledge a check asks the database itself.
    revocation_poll_seconds: float = 1.0
    # Who a staff token's subject is (roles, permissions, stores) is kept this long per process; a change made
    # by another process is seen within it (ended sign-ins are not delayed by it).
    actor_cache_seconds: float = 5.0
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
    # GraphiQL at GET /graphql and schema introspection: on unless ENVIRONMENT=production (None).
    graphql_ide: bool | None = None
    graphql_introspection: bool | None = None

    # Personal data encryption (phone, ID number): "kid:base64key,kid2:base64key" (32-byte AES keys);
    # the first encrypts, all decrypt, so keys rotate by prepending a new one. Generated under
    # data_dir when absent (development only), like the JWT key.
    field_encryption_keys: str | None = None
    # HMAC key for blind indexes (exact lookup of encrypted values); never rotated casually.
    blind_index_key: str | None = None

    # Uploaded files (app/core/files.py): "local" keeps them in a folder under data_dir, "s3" in an
    # S3-compatible bucket (MinIO, Aliyun OSS, Tencent COS, AWS S3). Download links are signed and expire.
    file_store: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    file_url_ttl_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    # Prefix for the local store's signed links (e.g. https://clinic.example.com); unset, links are paths.
    file_public_base_url: str | None = None
    # Clinical photos and attachments: the largest image and PDF accepted.
    clinical_image_max_bytes: int = 10 * 1024 * 1024
    clinical_pdf_max_bytes: int = 20 * 1024 * 1024

    # Member import: the largest file accepted, and the most rows.
    import_max_bytes: int = 10 * 1024 * 1024
    import_max_rows: int = 20_000

    # WeChat Pay v3 (JSAPI for the mini-program). Unset WECHAT_PAY_MCHID switches WeChat Pay off; once it is
    # set, every other field below without a default is required (a half-configured merchant is an error,
    # not a silently disabled tender). See app/integrations/wechat/pay.py.
    wechat_pay_base_url: str = "https://api.mch.weixin.qq.com"
    wechat_pay_mchid: str | None = None
    wechat_pay_appid: str | None = None
    # Serial number of the merchant API certificate whose private key signs our requests.
    wechat_pay_serial_no: str | None = None
    wechat_pay_private_key: str | None = None
    wechat_pay_private_key_file: Path | None = None
    # The 32-character APIv3 key set in the merchant platform; decrypts notifications.
    wechat_pay_api_v3_key: str | None = None
    # "serial:/path/cert-or-key.pem[,serial2:/path2.pem]": WeChat's platform certificates or its
    # platform public key (微信支付公钥, serial PUB_KEY_ID_…); inline PEM text works in place of a path,
    # and a certificate file may omit "serial:" (its own serial number is used).
    wechat_pay_platform_certs: str | None = None
    # Our payment notification URL (https, no query string); refunds notify at this URL + "/refund".
    wechat_pay_notify_url: str | None = None
    wechat_pay_order_timeout_minutes: int = 15

    # WeChat mini-program and WeCom (企业微信). Base URLs are settings so tests and `careloop fake-wechat`
    # point them at a local fake. One mini-program and one WeCom corp serve every tenant for now (see README).
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wecom_api_base_url: str = "https://qyapi.weixin.qq.com"
    wechat_mini_appid: str | None = None
    wechat_mini_secret: str | None = None
    wecom_corp_id: str | None = None
    wecom_agent_id: str | None = None
    # The self-built app's secret; the app must be in 客户联系 → 可调用应用 for external-contact calls.
    wecom_secret: str | None = None
    # Callback (接收消息服务器) Token and 43-character EncodingAESKey from the WeCom admin console.
    wecom_callback_token: str | None = None
    wecom_callback_aes_key: str | None = None
    # Callbacks whose timestamp is further than this from our clock are refused (replay window).
    wecom_callback_max_skew_seconds: int = 300
    wechat_http_timeout_seconds: float = 10.0

    # Outbound messages (app/domain/messaging): delivery attempts per message before it is dead-lettered,
    # and the exponential backoff between attempts (base * 2^(n-1), capped).
    message_max_attempts: int = 5
    message_backoff_base_seconds: float = 30.0
    message_backoff_max_seconds: float = 3600.0
    # SMS through a generic HTTP gateway (HMAC-signed JSON POST); unset SMS_GATEWAY_URL logs SMS instead of
    # sending them. No specific Chinese SMS vendor is integrated: put a small adapter service in front of one.
    sms_gateway_url: str | None = None
    sms_gateway_key_id: str = "careloop"
    sms_gateway_secret: str | None = None
    sms_gateway_timeout_seconds: float = 10.0

    # WeCom chat-record archive (会话内容存档), see app/domain/chatsync. The native Finance SDK
    # (libWeWorkFinanceSdk_C.so) is loaded from this path when set; unset, chat sync has no source.
    wecom_finance_sdk_path: Path | None = None
    # The archive's own Secret (管理工具 → 会话内容存档), not the app secret; the corp is WECOM_CORP_ID.
    wecom_msgaudit_secret: str | None = None
    # RSA private keys matching the message-encryption public keys set in the admin console, by version:
    # "3:<PEM>" or "3:/path/key.pem[,4:/path/key4.pem]"; a bare PEM (or file) is version 1. Old versions
    # stay configured as long as records encrypted under them may still be fetched.
    wecom_msgaudit_private_key: str | None = None
    wecom_msgaudit_private_key_file: Path | None = None
    wecom_msgaudit_proxy: str | None = None
    wecom_msgaudit_proxy_password: str | None = None
    # The tenant (its code) whose chats the archive is: one corp's archive belongs to exactly one tenant, and
    # the sync refuses to copy it into any other. Unset: chat sync is off.
    wecom_msgaudit_tenant: str | None = None
    chat_sync_batch_size: int = 500  # records per GetChatData call (WeCom allows at most 1000)
    chat_sync_timeout_seconds: int = 10

    # Outgoing webhooks (app/domain/webhooks). Plain http:// receivers on localhost are accepted only
    # when this is on (default: on in development, off otherwise); everything else must be https.
    webhook_allow_http_localhost: bool | None = None
    # Intranet receivers (a HIS on the clinic's own network): comma-separated CIDRs whose addresses webhooks
    # may reach although they are private, e.g. "10.20.0.0/16,192.168.8.10/32". Everything else must be public.
    webhook_allowed_private_networks: str | None = None
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_max_seconds: float = 6 * 3600.0

    @field_validator("webhook_allowed_private_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: str | None) -> str | None:
        for part in (value or "").split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"WEBHOOK_ALLOWED_PRIVATE_NETWORKS: {part.strip()!r} is not a CIDR") from exc
        return value

    @property
    def production(self) -> bool:
        return self.environment.strip().lower() == "production"

    def production_problems(self) -> list[str]:
        """What `ENVIRONMENT=production` refuses: each is convenient on a laptop and wrong in production."""
        if not self.production:
            return []
        problems = []
        if not (self.jwt_private_key or self.jwt_private_key_file):
            problems.append("JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is not set (a key would be generated)")
        if not self.field_encryption_keys:
            problems.append("FIELD_ENCRYPTION_KEYS is not set (a key would be generated)")
        if not self.blind_index_key:
            problems.append("BLIND_INDEX_KEY is not set (a key would be generated)")
        if not self.database_url:
            problems.append("DATABASE_URL is not set (the embedded PostgreSQL would start)")
        if not self.redis_url:
            problems.append("REDIS_URL is not set (the embedded Redis would start)")
        if self.webhook_allow_http_localhost:
            problems.append("WEBHOOK_ALLOW_HTTP_LOCALHOST is on (webhooks must be https in production)")
        if self.file_store == "s3" and not self.s3_bucket:
            problems.append("FILE_STORE=s3 but S3_BUCKET is not set (uploads would fail)")
        return problems

    def require_production_ready(self) -> None:
        """Refuse to start on a production misconfiguration, naming every problem at once."""
        problems = self.production_problems()
        if problems:
            raise ProductionMisconfigured(problems)

    @property
    def graphql_ide_enabled(self) -> bool:
        return self.graphql_ide if self.graphql_ide is not None else not self.production

    @property
    def graphql_introspection_enabled(self) -> bool:
        return self.graphql_introspection if self.graphql_introspection is not None else not self.production

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
