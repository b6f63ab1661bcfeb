"""All settings, read once from the environment (and ``.env``).

WaQtor's names are kept: ``REDIS_HOST``, ``REDIS_PORT``, ``MESSAGE_DELAY`` (ms),
``MAX_RETRIES``, ``INSTANT_THRESHOLD``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlencode, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_CHARS = 16
#: Environment variables an account may name as its Cloud API token (``accessTokenEnv``)
#: start with this, unless CLOUD_API_TOKEN_ENVS lists them.
TOKEN_ENV_PREFIX = "WA_TOKEN_"
#: Never a token, whatever CLOUD_API_TOKEN_ENVS says: the service's own secrets.
_OWN_SECRETS = frozenset(
    {
        "API_KEY",
        "READONLY_API_KEY",
        "SESSION_SECRET",
        "METRICS_TOKEN",
        "CALLBACK_SECRET",
        "CALLBACK_SECRET_FILE",
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_APP_SECRET_FILE",
        "WHATSAPP_VERIFY_TOKEN",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_CLUSTER_URL",
    }
)


class ConfigError(Exception):
    """A setting that makes the service unsafe or unable to start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # Errors name the setting, never echo its value: some hold passwords (WEB_SESSION_DB).
        hide_input_in_errors=True,
    )

    # --- Redis ---
    redis_url: str | None = None
    """redis://host:port/db or unix:///path. Unset (with REDIS_HOST unset too): ``serve`` starts
    its own redis-server in the data directory."""
    redis_host: str | None = None
    redis_port: int = 6379
    redis_appendfsync: Literal["everysec", "always"] = "everysec"
    """For the redis-server that ``serve`` starts: ``always`` closes the 1 s loss window."""
    redis_server_bin: str = "redis-server"
    redis_username: str | None = None
    redis_password: str | None = None
    """Password of the Redis servers that hold the data (REDIS_HOST, the Sentinel-managed
    primary and replicas, the Cluster's nodes); a password in REDIS_URL wins."""
    redis_sentinels: str = ""
    """``host:port,host:port``: the Sentinels to ask for the primary of REDIS_SENTINEL_MASTER.
    Every process (API, workers, dashboard) follows a failover without a restart."""
    redis_sentinel_master: str | None = None
    redis_sentinel_username: str | None = None
    redis_sentinel_password: str | None = None
    """The Sentinels' own password (``requirepass`` in sentinel.conf), if any."""
    redis_cluster_url: str | None = None
    """``redis://host:port`` of any node of a Redis Cluster (or set REDIS_CLUSTER=true with
    REDIS_URL). All keys then share one hash tag, REDIS_KEY_TAG (default: QUEUE_NAME)."""
    redis_cluster: bool = False
    redis_key_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Hash tag of every key: bullmq's prefix becomes ``{tag}`` and ours ``{tag}:KEY_PREFIX``,
    so each script's keys share one Cluster slot. Unset outside Cluster: keys stay as they
    were (``bull:...``, ``wq:...``)."""
    redis_min_replicas_ack: int | None = Field(default=None, ge=0, le=16)
    """Replicas that must acknowledge (``WAIT``) a claim and a recorded outcome before the
    provider is called. Unset: as many as the primary reports (re-read every few seconds, so
    also after a failover); 0: no wait."""
    redis_ack_timeout_ms: int = Field(default=1_000, ge=10, le=60_000)
    """How long a claim waits for its acknowledgements; past it nothing is sent: the claimed
    recipients go back to pending."""

    data_dir: Path = Field(
        default=Path("data"), validation_alias=AliasChoices("WAQTOR_DATA_DIR", "DATA_DIR")
    )
    """Holds the generated API key, the AOF of the bundled Redis and the log file."""

    # --- API ---
    api_key: str | None = None
    """One key, or several separated by commas; each at least 16 characters."""
    readonly_api_key: str | None = None
    """Keys (comma-separated) that may read everything and change nothing."""
    max_recipients: int = Field(default=100_000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    idempotency_wait_ms: int = Field(default=120_000, ge=10, le=600_000)
    """How long a send-bulk waits for a copy with the same Idempotency-Key still running
    before it answers 409 (still in progress): an instant send holds its request open."""
    cors_origins: str = ""
    """Comma-separated origins; CORS stays off unless set."""
    session_secret: str | None = None
    """Signs the dashboard's session cookie (at least 32 characters). Unset: generated on first
    use and stored in ``data/session_secret`` (mode 600), so sessions survive restarts."""
    session_max_age_s: int = Field(default=12 * 3600, ge=60)
    """How long a dashboard login lasts (seconds)."""
    preauth_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Body limit (bytes) of the routes that authenticate from their body (the signed
    WhatsApp webhook, the dashboard's login form), enforced before they are verified."""
    auth_fail_limit: int = Field(default=10, ge=0)
    """Failed logins or wrong API keys a client address may make in AUTH_FAIL_WINDOW_S; past
    that it gets 429 until the window ends (0: no limit)."""
    auth_fail_window_s: int = Field(default=300, ge=1)
    trusted_proxies: str = ""
    """Comma-separated addresses or networks (``10.0.0.0/8``) of reverse proxies whose
    X-Forwarded-For and X-Forwarded-Proto are believed, as uvicorn's --forwarded-allow-ips;
    ``*`` trusts any peer. Empty (the default): the client address is the TCP peer's."""

    # --- sending ---
    message_delay: int = Field(default=2000, ge=0)
    """Minimum gap in ms between two messages of one sender account (0 disables)."""
    message_jitter: float = Field(default=0.5, ge=0.0, le=5.0)
    """Random extra gap, up to this fraction of MESSAGE_DELAY (0 disables)."""
    max_retries: int = Field(default=3, ge=0, le=50)
    """Retries after the first attempt, for one recipient and for a whole job."""
    retry_backoff_ms: int = Field(default=2000, ge=0)
    """Base of the exponential backoff: 2 s, 4 s, 8 s, ..."""
    instant_threshold: int = Field(default=10, ge=0)
    default_region: str | None = None
    """Region (e.g. SA) for numbers written without a country code; unset: all numbers must
    carry one (966..., +966..., 00966...)."""
    identical_text_warn: int = Field(default=50, ge=0)
    """Warn when more than this many recipients of one request get the same text (0: off)."""
    signature: str = ""
    """Value of ``{signature}`` in templates."""
    timezone: str = "UTC"
    """Zone of ``{date}`` and ``{time}``."""
    provider: Literal["simulator"] = "simulator"
    provider_timeout_ms: int = Field(default=15_000, ge=1)
    send_batch: int = Field(default=200, ge=1, le=1000)
    """Recipients claimed and recorded per script call on an account with no delay, whatever
    the provider (sent in one request where it takes batches, else as concurrent requests):
    one Redis script call each way instead of one per recipient. 1 turns batching off. (200
    sent a 10k campaign faster than 100 in 5 of 6 interleaved runs, 300 not: bench/README.md.)"""
    send_lease_ms: int = Field(default=60_000, ge=1)
    """How long an in-flight send may take before a crashed worker's recipient is settled as
    not sent (after the provider confirms it has no record of it)."""

    default_account_tier: Literal["new", "regular", "trusted", "business"] | None = None
    """Tier of the account that exists with no setup; unset: no caps (WaQtor's behaviour)."""
    breaker_window: int = Field(default=50, ge=5)
    breaker_failure_ratio: float = Field(default=0.3, gt=0, le=1)
    """Pause an account when more than this share of its last BREAKER_WINDOW sends failed."""
    breaker_strikes: int = Field(default=3, ge=1)
    """Ban signals (throttling, spam, policy) within an hour that pause an account."""
    breaker_cooldown_ms: int = Field(default=60_000, ge=0)
    """First rest after a ban signal; doubles with each further signal (up to an hour)."""
    resume_reduced_ms: int = Field(default=24 * 3600 * 1000, ge=0)
    """After a manual resume, an account runs at half its caps and double its delay this long."""

    # --- simulator (development) ---
    sim_latency_ms: int = Field(default=0, ge=0)
    sim_batch_size: int = Field(default=1000, ge=1, le=10_000)
    """Messages the simulator takes in one request; 1: one message per call, like the Cloud
    API (the per-message benchmark)."""
    sim_max_in_flight: int = Field(default=100, ge=1, le=1000)
    """Calls in flight per account when the simulator takes one message per call."""

    # --- WhatsApp Cloud API (accounts with "provider": "cloud_api") ---
    cloud_api_base_url: str = "https://graph.facebook.com"
    """Graph API root; point it at a proxy or a fake for staging and tests."""
    cloud_api_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$")
    cloud_api_mps: float = Field(default=80.0, gt=0, le=10_000)
    """Messages per second one phone number may send (Meta's default throughput is 80)."""
    cloud_api_concurrency: int = Field(default=128, ge=1, le=1000)
    """Requests in flight at once per phone number and worker process, at most, for accounts
    with no delay (MESSAGE_DELAY / delayMs 0): the ceiling of the adaptive in-flight limit,
    which backs off on 130429s and slow answers. Sending at CLOUD_API_MPS needs about
    CLOUD_API_MPS x the answer time (s) in flight. With a delay, sends stay one at a time."""
    cloud_api_max_connections: int = Field(default=100, ge=1, le=10_000)
    """Keep-alive HTTP connections per phone number."""
    cloud_api_token_envs: str = ""
    """Comma-separated environment variables an account may name as ``accessTokenEnv`` besides
    the ``WA_TOKEN_*`` ones (never one of the service's own secrets)."""
    # --- WhatsApp Web, built in (accounts with "provider": "web"; ``waqtor[web]``) ---
    web_min_gap_ms: int = Field(default=6_000, ge=0, le=3_600_000)
    """The least gap between two messages of one web account, whatever its delay: a phone's
    WhatsApp is banned for machine-like bursts. Typing presence is shown inside it."""
    web_lease_ms: int = Field(default=15_000, ge=1_000, le=600_000)
    """How long a process's claim on a web account's one live connection lasts unrenewed: after
    a crash, another process takes the account over this long after the last renewal."""
    web_number_cache_ms: int = Field(default=7 * 86_400_000, ge=0)
    """How long a number check ("is it on WhatsApp?") is trusted."""
    web_max_sessions: int = Field(default=64, ge=1, le=1000)
    """Connected web accounts one process may hold (its thread pool is sized for them)."""
    web_session_dir: Path | None = None
    """Where session databases (one SQLite file per web account, mode 600) live; default
    ``<data dir>/web``."""
    web_session_db: SecretStr | None = None
    """A ``postgres://`` (or ``postgresql://``) URL: web accounts' sessions live in that Postgres
    server instead, one database per account, so processes on different hosts can hold an
    account in turn. It holds a password: never logged or shown."""

    whatsapp_verify_token: str | None = None
    """The verify token you typed into Meta's webhook settings. Unset: GET
    /webhooks/whatsapp answers 404."""
    whatsapp_app_secret: str | None = None
    """The Meta app secret that signs webhooks (X-Hub-Signature-256). Unset: POST
    /webhooks/whatsapp answers 404. ``WHATSAPP_APP_SECRET_FILE`` may name a file instead."""
    whatsapp_app_secret_file: Path | None = None
    opt_out_keywords: str = (
        "STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,OPT OUT,إلغاء,ايقاف,توقف,إلغاء الاشتراك"
    )
    """Comma-separated: an inbound message that is exactly one of these (any case, Arabic
    alef and hamza spellings alike) puts its sender on the account's suppression list."""

    # --- WhatsApp Web gateways (accounts with "provider": "waha" or "evolution") ---
    # Each gateway's URL and keys come from GATEWAY_<NAME>_URL, GATEWAY_<NAME>_KEY and
    # GATEWAY_<NAME>_WEBHOOK_KEY (or *_FILE): see docs/gateways.md.
    gateway_min_gap_ms: int = Field(default=8000, ge=0, le=3_600_000)
    """The least gap (ms) between two messages of one gateway account, whatever its delay:
    ordinary WhatsApp numbers are banned for machine-like bursts. The gap in force is a random
    value between 1x and 2x the account's delay (its jitter defaults to 1)."""
    gateway_typing_ms_per_char: int = Field(default=40, ge=0, le=1000)
    """"typing..." shown before each message: this many ms per character of the text, from
    GATEWAY_TYPING_MIN_MS up to GATEWAY_TYPING_MAX_MS (and at most half the gap, inside it)."""
    gateway_typing_min_ms: int = Field(default=800, ge=0, le=60_000)
    gateway_typing_max_ms: int = Field(default=6000, ge=0, le=60_000)
    gateway_number_check_ttl_s: int = Field(default=7 * 86400, ge=60, le=365 * 86400)
    """How long a gateway's answer "on WhatsApp or not" is kept for a number."""
    gateway_session_check_ms: int = Field(default=5000, ge=100, le=600_000)
    """How long a gateway session's state is trusted before it is asked again."""

    # --- status callbacks out ---
    callback_secret: str | None = None
    """Key of the HMAC-SHA256 signature on status callbacks (at least 16 characters).
    ``CALLBACK_SECRET_FILE`` may name a file instead. Unset: callbacks wait in the outbox."""
    callback_secret_file: Path | None = None
    callback_timeout_ms: int = Field(default=10_000, ge=100)
    callback_backoff_ms: int = Field(default=1_000, ge=1)
    """First retry of a failed callback; doubles each time, up to an hour apart."""
    callback_allow_private: bool = False
    """Allow callback URLs whose host resolves to a loopback, private or link-local address
    (off: such callbacks are refused, so an API client cannot make the service call into its
    own network)."""
    callback_max_age_ms: int = Field(default=24 * 3600 * 1000, ge=1000)
    """A callback that still fails this long after its event is given up."""
    callback_concurrency: int = Field(default=8, ge=1, le=256)

    # --- workers ---
    queue_name: str = "waqtor"
    key_prefix: str = "wq"
    worker_concurrency: int = Field(default=20, ge=1)
    """Campaigns one worker process runs at once (they share each account's pacing)."""
    assist_workers: int = Field(default=3, ge=0, le=64)
    """How many other worker processes a large campaign of an account with no delay asks to
    help send it, at most (one fewer than the live workers); 0: a campaign stays on one."""
    lock_duration_ms: int = Field(default=30_000, ge=500)
    stalled_interval_ms: int = Field(default=15_000, ge=200)
    heartbeat_ms: int = Field(default=5_000, ge=100)
    reconcile_every_ms: int = Field(default=15_000, ge=100)
    """How often one worker looks for campaigns whose job was removed outside waqtor (Bull
    Board's remove or clean) and for drifted backlog counters (``waqtor.sending.reconcile``)."""
    reconcile_grace_ms: int = Field(default=60_000, ge=0)
    """A campaign's job must be missing this long before its open recipients are canceled."""

    # --- logs and metrics ---
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (campaign, account and attempt id as fields)."""
    metrics_token: str | None = None
    """``GET /metrics`` takes ``Authorization: Bearer <METRICS_TOKEN>`` (at least 16
    characters), so a Prometheus server needs no API key; an API key is accepted too."""

    @field_validator("web_session_db")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = urlsplit(value.get_secret_value().strip()).scheme.lower()
        if scheme not in ("postgres", "postgresql"):
            # The message names the setting and the scheme, never the URL (it has a password).
            raise ValueError(
                f"WEB_SESSION_DB must be a postgres:// or postgresql:// URL, not {scheme or 'no'}"
                " scheme (unset it to keep sessions in SQLite files)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("default_region")
    @classmethod
    def _region_upper(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    # ----- derived -----
    def api_keys(self) -> list[str]:
        return _split_keys(self.api_key, "API_KEY")

    def readonly_keys(self) -> list[str]:
        return _split_keys(self.readonly_api_key, "READONLY_API_KEY")

    def metrics_tokens(self) -> list[str]:
        return _split_keys(self.metrics_token, "METRICS_TOKEN")

    def token_env_allowed(self, name: str) -> bool:
        """Whether an account may read its Cloud API token from ``$name``: a ``WA_TOKEN_*``
        variable or one CLOUD_API_TOKEN_ENVS lists; never the service's own secrets."""
        if name in _OWN_SECRETS or name.startswith("GATEWAY_"):
            return False  # the service's own secrets, and the gateways' keys
        listed = {n.strip() for n in self.cloud_api_token_envs.split(",") if n.strip()}
        return (name.startswith(TOKEN_ENV_PREFIX) and len(name) > len(TOKEN_ENV_PREFIX)) or (
            name in listed
        )

    def proxies(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    def cors_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def external_redis_url(self) -> str | None:
        """The Redis to use, or None when ``serve`` should start its own.

        Sentinel and Cluster are written as URLs too (``redis+sentinel://``,
        ``redis+cluster://``, see ``store.connection``), so every process passes one string
        around, whichever way it connects."""
        if self.redis_sentinels.strip():
            return self._sentinel_url()
        if self.redis_cluster_url:
            return cluster_url(self.redis_cluster_url)
        if self.redis_url:
            return cluster_url(self.redis_url) if self.redis_cluster else self.redis_url
        if self.redis_host:
            return f"redis://{self._auth()}{self.redis_host}:{self.redis_port}/0"
        return None

    def _auth(self) -> str:
        if not self.redis_password:
            return ""
        return f"{quote(self.redis_username or '', safe='')}:{quote(self.redis_password, safe='')}@"

    def _sentinel_url(self) -> str:
        if not self.redis_sentinel_master:
            raise ConfigError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the master's name)")
        hosts = [h.strip() for h in self.redis_sentinels.split(",") if h.strip()]
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ConfigError(f"REDIS_SENTINELS: {host!r} is not host:port")
        query = {
            k: v
            for k, v in (
                ("sentinel_username", self.redis_sentinel_username),
                ("sentinel_password", self.redis_sentinel_password),
            )
            if v
        }
        tail = f"?{urlencode(query)}" if query else ""
        master = quote(self.redis_sentinel_master, safe="")
        return f"{SENTINEL_SCHEME}://{self._auth()}{','.join(hosts)}/{master}{tail}"

    def key_tag(self, url: str) -> str | None:
        """The hash tag every key carries when connected to ``url``: REDIS_KEY_TAG, else
        QUEUE_NAME on a Cluster, else none (a single Redis keeps the keys it always had)."""
        if self.redis_key_tag:
            return self.redis_key_tag
        return self.queue_name if is_cluster(url) else None

    def key_prefixes(self, url: str) -> tuple[str, str]:
        """``(ours, bullmq's)``: ``("wq", "bull")``, or ``("{tag}:wq", "{tag}")``."""
        tag = self.key_tag(url)
        if tag is None:
            return self.key_prefix, "bull"
        return f"{{{tag}}}:{self.key_prefix}", f"{{{tag}}}"

    @property
    def bundled_socket(self) -> Path:
        return self.data_dir.resolve() / "redis.sock"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "api_key"


def read_secret(value: str | None, path: Path | None) -> str | None:
    """A secret given directly or in a file (``*_FILE``, re-read on every call so it can be
    rotated); None when neither is set. Never logged."""
    if value:
        return value
    if path is not None:
        try:
            return path.read_text().strip() or None
        except OSError:
            return None
    return None


def _split_keys(raw: str | None, name: str) -> list[str]:
    if not raw:
        return []
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for key in keys:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"{name}: every key must be at least {MIN_KEY_CHARS} characters")
    return keys


SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def cluster_url(url: str) -> str:
    """A node's ``redis://`` (or ``rediss://``) URL, marked as a Cluster's."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("REDIS_CLUSTER_URL: expected redis://host:port")
    if scheme in CLUSTER_SCHEMES:
        return url
    if scheme not in ("redis", "rediss"):
        raise ConfigError(f"Redis Cluster URL: scheme {scheme!r} is not redis or rediss")
    return f"{scheme}+cluster://{rest}"


def redis_label(url: str) -> str:
    """``HOST:PORT`` (or the socket path, or the Sentinel master's name and Sentinels) for
    messages; never the password."""
    scheme, _, rest = url.partition("://")
    if scheme == SENTINEL_SCHEME:
        hosts, _, master = rest.rpartition("@")[2].partition("/")
        return f"Sentinel master {unquote(master.partition('?')[0])} via {hosts}"
    if scheme in CLUSTER_SCHEMES:
        parts = urlsplit("redis://" + rest)
        return f"Cluster at {parts.hostname or 'localhost'}:{parts.port or 6379}"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def load_or_create_key(settings: Settings) -> tuple[list[str], bool]:
    """The configured keys, or the one stored in the data directory (made on first use).

    Returns the keys and whether a new key was generated just now (to print it once).
    """
    keys = settings.api_keys()
    if keys:
        return keys, False
    path = settings.key_file
    if path.exists():
        stored = path.read_text().strip()
        if len(stored) >= MIN_KEY_CHARS:
            return [stored], False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(key + "\n")
    return [key], True
