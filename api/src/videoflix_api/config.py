"""Settings of the API process: one pydantic-settings class read from `VIDEOFLIX_*` env."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from videoflix_core.transcode import Strategy

# Known only so that it can be refused: anything signed with it is forgeable by anyone.
DEV_SECRET_KEY = "videoflix-dev-insecure-secret-key-do-not-use-in-production"  # noqa: S105


class Settings(BaseSettings):
    """Every knob of the API. Loaded once in `create_app` and passed down, never re-read."""

    model_config = SettingsConfigDict(env_prefix="VIDEOFLIX_", extra="ignore")

    dev_mode: bool = Field(
        default=False,
        description="Development mode: allows the built-in secret key and plain-HTTP cookies.",
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY), description="Signs access and refresh tokens (HS256)."
    )
    database_url: str = "postgresql+psycopg://videoflix@localhost:5432/videoflix"
    database_pool_size: int = Field(default=10, ge=1)
    migrate_on_start: bool = Field(
        default=False, description="Run the packaged Alembic migrations when the app starts."
    )

    # Object storage (S3 / MinIO).
    s3_endpoint_url: str | None = None
    s3_bucket: str = "videoflix"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    s3_public_base_url: str | None = Field(
        default=None,
        description="When set (a public bucket or CDN), playback and thumbnail URLs are "
        "<base>/<key> instead of presigned URLs.",
    )
    presign_expiry_seconds: int = Field(
        default=300,
        ge=10,
        le=7 * 24 * 3600,
        description="Lifetime of presigned (and embedded /media/) URLs that are fetched once: "
        "posters, sprites, upload parts; the start-up margin of playback URLs.",
    )

    # Playback URLs (progressive MP4, HLS media URIs, embedded /media/ links) are fetched again and
    # again for as long as someone watches, and players never ask for a fresh one, so their lifetime
    # follows the video's length (services/playback.py::playback_expiry).
    playback_pause_seconds: int = Field(
        default=4 * 3600,
        ge=0,
        le=7 * 24 * 3600,
        description="Pauses and stalls a viewer may take in total and still watch to the end: "
        "playback URLs live for the video's duration + presign_expiry_seconds + this.",
    )
    playback_expiry_max_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=10,
        le=7 * 24 * 3600,
        description="Longest lifetime of a playback URL (S3 SigV4 allows 7 days), and the "
        "lifetime when a video's duration is unknown.",
    )

    # Transcode dispatch.
    dispatcher: Literal["kubernetes", "local"] = "kubernetes"
    namespace: str = Field(default="videoflix", description="Where VideoTranscode CRs live.")
    kubeconfig: str | None = Field(
        default=None, description="Path of a kubeconfig; in-cluster configuration when unset."
    )
    kubernetes_request_timeout_seconds: float = Field(
        default=10,
        gt=0,
        description="Longest wait for one Kubernetes API call (create, patch, delete of a CR); a "
        "hung API server then fails the hand-over visibly instead of holding a request or the "
        "sweeper for ever.",
    )
    transcode_strategy: Strategy = Field(
        default=Strategy.PER_RENDITION,
        description="spec.strategy of the VideoTranscodes the API creates: PerRendition (one Job "
        "per rung) or SinglePass (one Job decodes once for every rung).",
    )
    # The outbox sweeper (`services/outbox.py`): a row committed with its hand-over owed gets its
    # CR even when the API died between the commit and the create.
    outbox_sweep_interval_seconds: float = Field(
        default=30,
        ge=0,
        description="How often each API process hands over owed transcodes and expires abandoned "
        "uploads; 0 turns the sweeper off.",
    )
    outbox_grace_seconds: float = Field(
        default=60,
        ge=0,
        description="How long a hand-over may stay owed before the sweeper does it (the request "
        "that committed the row normally does it within this), and before staff may retry a "
        "'pending' video whose hand-over keeps failing.",
    )
    outbox_batch: int = Field(default=50, ge=1, description="Most rows one sweep handles.")
    upload_expiry_seconds: int = Field(
        default=86400,
        ge=60,
        description="Age after which a video whose source never arrived is deleted, and an "
        "incomplete multipart upload under videos/ is aborted.",
    )
    fault_crash_after_commit: bool = Field(
        default=False,
        description="TEST-ONLY fault hook: the process exits right after committing a new "
        "generation, before creating its CR. Refused outside dev mode.",
    )

    # Frontend and HTTP.
    frontend_url: str = "http://localhost:4200"
    frontend_login_path: str = "/login"
    frontend_reset_path: str = "/reset-password"
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call with credentials; the frontend URL is always one.",
    )
    public_base_url: str | None = Field(
        default=None,
        description="Absolute public URL of this API: the base of links in responses and in "
        "confirmation mails. Required outside dev mode (a link must never follow the request's "
        "Host header); in dev mode the request's own base URL when unset.",
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Addresses (IPs or CIDRs, comma-separated) of the reverse proxies whose "
        "X-Forwarded-For is believed: the ingress controller. Empty: never; the peer address "
        "is the client.",
    )

    # Auth.
    access_token_seconds: int = Field(default=300, ge=5)
    refresh_token_seconds: int = Field(default=3600, ge=60)
    refresh_remember_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    confirm_token_seconds: int = Field(default=48 * 3600, ge=60)
    reset_token_seconds: int = Field(default=2 * 3600, ge=60)
    refresh_reuse_grace_seconds: int = Field(
        default=5,
        ge=0,
        description="A refresh token presented again within this many seconds of its rotation is "
        "answered with the same successor (parallel requests), later it counts as theft.",
    )
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_domain: str | None = None

    # Rate limits: attempts per window, per client address (and per e-mail where one is given).
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_login: int = Field(default=10, ge=1)
    rate_limit_register: int = Field(default=5, ge=1)
    rate_limit_reset: int = Field(default=5, ge=1)
    rate_limit_email_exists: int = Field(default=20, ge=1)
    # Per account, from any address: a guesser spread over many addresses still gets this many
    # wrong passwords per window. Unknown e-mails are counted alike, so a lock reveals nothing.
    rate_limit_login_account: int = Field(
        default=10,
        ge=1,
        description="Failed sign-ins per e-mail (known or not) per account window, from any "
        "address; then 429 with Retry-After, even for the right password, until the window ends.",
    )
    rate_limit_login_account_window_seconds: int = Field(default=900, ge=1)

    # Password hashing (argon2id). Each hash or verification holds `password_hash_memory_kib` for
    # its duration, so the number running at once bounds the API's memory.
    password_hash_concurrency: int = Field(
        default=4,
        ge=1,
        description="Most argon2 hashes/verifications running at once per process (each holds "
        "password_hash_memory_kib); further sign-ins wait.",
    )
    password_hash_memory_kib: int = Field(default=65536, ge=1024)
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_parallelism: int = Field(default=4, ge=1)

    # Mail.
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "Videoflix <noreply@videoflix.local>"

    # Uploads.
    upload_max_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest source streamed through the API."
    )
    multipart_upload_max_bytes: int = Field(
        default=50 * 1024**3, ge=1, description="Largest source uploaded directly to S3."
    )
    multipart_part_bytes: int = Field(default=16 * 1024**2, ge=5 * 1024**2)

    # Operations.
    log_level: str = "INFO"
    log_json: bool = True
    page_size_default: int = Field(default=50, ge=1, le=500)
    page_size_max: int = Field(default=200, ge=1, le=1000)
    # The unchanged Angular client cannot page, so `/content/` without `limit`/`cursor` streams the
    # whole catalogue; a deployment whose clients page can cap that.
    content_max_items: int = Field(
        default=0,
        ge=0,
        description="Most videos `/content/` returns without `limit`/`cursor` (0: all, streamed); "
        "when more exist, X-Next-Cursor and Link name the next page.",
    )
    content_stream_batch: int = Field(
        default=500, ge=1, le=10_000, description="Rows fetched per query while streaming it."
    )

    @field_validator("public_base_url", "s3_public_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (VIDEOFLIX_PUBLIC_BASE_URL=) means unset, not an invalid URL.
        return None if value == "" else value

    @field_validator("frontend_url", "public_base_url", "s3_public_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        AnyHttpUrl(value)  # refuses anything that is not an absolute http(s) URL
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_dev_defaults(self) -> Settings:
        if self.dev_mode:
            return self
        problems = check_production(self)
        if problems:
            raise ValueError("refusing to start outside dev mode: " + "; ".join(problems))
        return self

    @property
    def allowed_origins(self) -> list[str]:
        origins = [self.frontend_url, *(o.rstrip("/") for o in self.cors_origins)]
        return list(dict.fromkeys(origins))


def check_production(settings: Settings) -> list[str]:
    """What makes `settings` unsafe outside dev mode (empty when fine)."""
    problems = []
    secret = settings.secret_key.get_secret_value()
    if secret == DEV_SECRET_KEY:
        problems.append("VIDEOFLIX_SECRET_KEY is the built-in development key")
    elif len(secret) < 32:
        problems.append("VIDEOFLIX_SECRET_KEY must be at least 32 characters")
    if settings.cookie_samesite == "none" and not settings.cookie_secure:
        problems.append("SameSite=None cookies must be Secure")
    if settings.fault_crash_after_commit:
        problems.append("VIDEOFLIX_FAULT_CRASH_AFTER_COMMIT is a test-only fault hook")
    if not settings.public_base_url:
        problems.append(
            "VIDEOFLIX_PUBLIC_BASE_URL is required (links in mails would follow the request's "
            "Host header, which a client chooses)"
        )
    return problems
