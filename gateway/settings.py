"""One settings object for the whole gateway, built once from the environment.

Every adapter is built from this object by the application factory
(`gateway.app.create_app`); nothing else reads the environment.  All variables
carry the `GATEWAY_` prefix and are documented in README.md.  The defaults are
the local stack that `make run` starts, so that the `gateway` command run from
`.venv` with no environment talks to the same database, Redis, S3 endpoint and
clamd as `make run`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "GATEWAY_"
MIB = 1024 * 1024
SMTP_SECURITY = ("none", "starttls", "ssl")


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """The per-user data directory (XDG), where the default SQLite file and dev keys live."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "records-gateway"


@dataclass(frozen=True)
class Settings:
    """Configuration of one gateway process; immutable once built."""

    env: str = "development"
    data_dir: Path = field(default_factory=lambda: default_data_dir(os.environ))
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # clamd: several addresses form a pool tried in turn.
    clamd_addresses: tuple[str, ...] = ("127.0.0.1:3310",)
    clamd_timeout: float = 120.0
    # S3: an endpoint URL is set for the local moto server; empty means AWS itself.
    s3_endpoint_url: str | None = "http://127.0.0.1:5005"
    s3_region: str = "us-east-1"
    s3_bucket: str = "records-gateway-documents"
    kms_key_id: str = "alias/records-gateway-documents"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    storage_timeout: float = 10.0
    max_upload_bytes: int = 512 * MIB
    # Reading signed authorizations (gateway/reading, docs/reading.md): the thresholds come from the corpus there.
    reading_enabled: bool = True
    reading_max_pages: int = 3
    reading_page_timeout: float = 30.0
    reading_max_pixels: int = 12_000_000
    reading_dpi: int = 300
    reading_min_words: int = 40
    reading_min_confidence: float = 60.0
    reading_submit_wait: float = 30.0
    # Dates (authorization expiry, due dates) are judged in the facilities' own calendar.
    facility_timezone: str = "America/New_York"
    # Encrypts signing keys at rest (and signs portal sessions). Required in production;
    # in development one is generated once into the data directory.
    secret_key: str = field(default="", repr=False)
    # Keys the audit trail's HMAC chain and its checkpoints; never stored in the database. Required in
    # production (and different from the secret key); in development derived from the secret key.
    audit_chain_key: str = field(default="", repr=False)
    # Signed checkpoints of the audit chain (count and head), kept outside the database in an S3
    # bucket with Object Lock (COMPLIANCE mode), each locked for the retention; written by the relay's
    # housekeeping once this many entries or seconds have passed since the last one.
    audit_checkpoint_bucket: str = "records-gateway-audit-checkpoints"
    audit_checkpoint_retention_days: int = 2190
    audit_checkpoint_every_entries: int = 100
    audit_checkpoint_every_seconds: int = 60
    # Identity.
    jwt_issuer: str = "records-gateway"
    jwt_audience: str = "records-gateway-api"
    access_token_ttl: int = 900
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    # A second factor (TOTP, gateway/auth/mfa.py) for records staff, auditors and admins: they may sign in
    # without one only to enrol. Unset means on in production and off elsewhere; off in production only for
    # a deployment whose staff all sign in through the hospital's identity provider (which then owns MFA).
    mfa_required: bool | None = None
    # Hospital sign-on (portal only): staff sign in through the hospital's OpenID Connect provider with the
    # authorization code flow and PKCE (gateway/auth/hospital_sso.py).  The provider's endpoints come from
    # `<issuer>/.well-known/openid-configuration`; the redirect URI registered there is
    # `<portal_url>/portal/sso/callback`.  `sso_facility_claim` names the ID-token claim (a string or a list
    # of strings) and `sso_facility_map` (JSON) maps its values to facility codes, e.g.
    # {"records-lowell": "lowell-general", "records-all": ["tufts-mc", "melrosewakefield"]}; a person with no
    # mapped value is refused.  The client secret is never stored or logged (masked by `redacted()`).
    sso_issuer: str | None = None
    sso_client_id: str | None = None
    sso_client_secret: str = field(default="", repr=False)
    sso_token_auth_method: str = "client_secret_basic"
    sso_facility_claim: str | None = None
    sso_facility_map: str | None = None
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    api_rate_limit: str = "600 per minute"
    # Argon2id cost: `rfc9106` (argon2-cffi's RFC 9106 low-memory profile, ~0.25 s a hash on one core) or
    # `test-minimal` (the smallest parameters, for test suites that make thousands of accounts; refused in
    # production).  Hashes carry their own parameters, so either verifies the other's.
    password_hash_profile: str = "rfc9106"
    # Sign-in attempts per client address, on top of the database lockouts.
    sign_in_rate_limit: str = "30 per minute"
    # Password-reset asks and confirmations per client address (each account also gets at most three reset
    # e-mails an hour, counted in the database: gateway.auth.password_reset).
    password_reset_rate_limit: str = "20 per hour"
    # Failed bearer credentials (bad API keys and tokens) per client address, a moving window in Redis
    # shared by every process. Past it the address gets 429 before any key lookup or signature check,
    # except for credentials that authenticated (or were issued) within `bearer_known_good_ttl` seconds,
    # remembered in Redis as HMACs keyed with `secret_key`, never the credential itself. A day, so that
    # a key used once a night is still recognized; a credential that fails is forgotten at once.
    bearer_failure_rate_limit: str = "20 per minute"
    bearer_known_good_ttl: int = 86400
    # Audit of failed bearer attempts: the first `..._first` per address and window (seconds) get their own
    # entry; later ones are counted and written as one `auth.failed_bearer.aggregate` entry per address once
    # the window is over. At most `..._max_entries` failed-bearer entries per window across all addresses;
    # past that, the remaining addresses share one aggregate entry without an address.
    bearer_failure_audit_first: int = 5
    bearer_failure_audit_window: int = 60
    bearer_failure_audit_max_entries: int = 1000
    # Webhooks: targets on loopback/private/link-local/metadata addresses are refused unless allowed
    # (only for a local stack or tests; never in production).
    webhook_allow_private: bool = False
    webhook_timeout: float = 10.0
    # Routing: where facility "folder" sinks may write (manifests + documents for file-pickup systems).
    outbox_batch_size: int = 100
    # Seconds between relay passes when nothing woke it.  On PostgreSQL the relay LISTENs and a commit that
    # wrote an outbox row wakes it at once (NOTIFY), so this is only the fallback; SQLite relies on it.
    outbox_poll_interval: float = 0.1
    # Seconds a relay owns the rows it claimed; rows of a relay that died are published by another after it.
    outbox_lease: int = 60
    # RQ jobs: seconds a job may run before it is stopped (SIGALRM in the worker) and retried.  A worker
    # killed mid-job leaves its job "started"; the job is retried once this plus a short margin has
    # passed without the worker finishing it, found by a worker's registry sweep every
    # `worker_maintenance_interval` seconds.
    job_timeout: int = 180
    worker_maintenance_interval: int = 60
    # E-mail to portal users (status changes, new messages, stale-work warnings, due-date extensions):
    # sent by RQ jobs through this SMTP server, never from a web request.  `smtp_security` is `none`
    # (plain SMTP: only for a loopback relay or `make run`'s catcher), `starttls` (usually port 587)
    # or `ssl` (implicit TLS, usually port 465); TLS certificates are verified against the host name.
    # `smtp_user`/`smtp_password` log in when a user is set.  The defaults are `make run`'s local catcher.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_security: str = "none"
    smtp_user: str | None = None
    smtp_password: str = field(default="", repr=False)
    smtp_timeout: float = 10.0
    # The From of every e-mail, and the portal's public address for the links in them.
    mail_from: str = "Records Request Gateway <records-gateway@localhost>"
    portal_url: str = "http://localhost:8080"
    # Stale work (API.md v1.1 lifecycle): drafts untouched this many days and returned requests
    # unanswered this many days are cancelled (STALE_DRAFT / RETURN_UNANSWERED) by the daily job; the
    # requester is warned `stale_warning_days` before (e-mail and webhook).
    stale_draft_days: int = 60
    stale_returned_days: int = 30
    stale_warning_days: int = 7
    # Network placement: how many reverse proxies sit in front (for the client IP).
    trusted_proxy_count: int = 0
    # Portal: signed-in browsers are signed out after this many idle seconds, and after the lifetime
    # whatever they do; the session cookie is Secure (HTTPS only; browsers treat localhost as secure).
    portal_idle_timeout: int = 900
    portal_session_lifetime: int = 12 * 3600
    portal_cookie_secure: bool = True
    # Invoices: who is paid for released records and where checks go, per facility (JSON; default the
    # packaged gateway/intake/payees.json).
    payees_file: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def is_production(self) -> bool:
        """True when running for real; development conveniences are then refused."""
        return self.env == "production"

    @property
    def requires_mfa(self) -> bool:
        """Whether staff, auditors and admins need a second factor (unset: in production only)."""
        return self.is_production if self.mfa_required is None else self.mfa_required

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from `GATEWAY_*` variables; keyword overrides win (tests use them)."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        if "data_dir" not in values:
            values["data_dir"] = default_data_dir(environ)
        settings = cls(**values)
        if not settings.database_url:
            settings = dataclasses.replace(
                settings, database_url=f"sqlite:///{Path(settings.data_dir) / 'gateway.db'}"
            )
        if not settings.secret_key and not settings.is_production:
            settings = dataclasses.replace(settings, secret_key=_development_secret(Path(settings.data_dir)))
        if settings.mfa_required is None:
            settings = dataclasses.replace(settings, mfa_required=settings.is_production)
        if not settings.audit_chain_key and not settings.is_production and settings.secret_key:
            settings = dataclasses.replace(settings, audit_chain_key=derived_key(settings.secret_key, "audit-chain"))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse combinations that would be unsafe or cannot work."""
        if self.env not in {"development", "test", "production"}:
            raise SettingsError(f"GATEWAY_ENV must be development, test or production, not {self.env!r}")
        if not self.clamd_addresses:
            raise SettingsError("GATEWAY_CLAMD_ADDRESSES needs at least one host:port")
        for address in self.clamd_addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise SettingsError(f"clamd address {address!r} is not host:port")
        if not 60 <= self.access_token_ttl <= 900:
            raise SettingsError("GATEWAY_ACCESS_TOKEN_TTL must be between 60 and 900 seconds")
        if self.bearer_known_good_ttl < 60:
            raise SettingsError("GATEWAY_BEARER_KNOWN_GOOD_TTL must be at least 60 seconds")
        if self.bearer_failure_audit_first < 0 or self.bearer_failure_audit_max_entries < 1:
            raise SettingsError("GATEWAY_BEARER_FAILURE_AUDIT_FIRST must be ≥ 0 and ..._MAX_ENTRIES ≥ 1")
        if not 1 <= self.bearer_failure_audit_window <= 86400:
            raise SettingsError("GATEWAY_BEARER_FAILURE_AUDIT_WINDOW must be 1 to 86400 seconds")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.facility_timezone)
        except Exception:
            raise SettingsError(f"GATEWAY_FACILITY_TIMEZONE {self.facility_timezone!r} is not a time zone") from None
        if self.max_upload_bytes <= 0:
            raise SettingsError("GATEWAY_MAX_UPLOAD_BYTES must be positive")
        if len(self.secret_key) < 32:
            raise SettingsError("GATEWAY_SECRET_KEY must be at least 32 characters")
        if len(self.audit_chain_key) < 32:
            raise SettingsError("GATEWAY_AUDIT_CHAIN_KEY is required (at least 32 characters)")
        if self.is_production and hmac.compare_digest(self.audit_chain_key, self.secret_key):
            raise SettingsError("GATEWAY_AUDIT_CHAIN_KEY must differ from GATEWAY_SECRET_KEY in production")
        if not self.audit_checkpoint_bucket:
            raise SettingsError("GATEWAY_AUDIT_CHECKPOINT_BUCKET must name the checkpoint bucket")
        for name in ("retention_days", "every_entries", "every_seconds"):
            if getattr(self, f"audit_checkpoint_{name}") < 1:
                raise SettingsError(f"GATEWAY_AUDIT_CHECKPOINT_{name.upper()} must be at least 1")
        if not 10 <= self.portal_idle_timeout <= self.portal_session_lifetime:
            raise SettingsError("GATEWAY_PORTAL_IDLE_TIMEOUT must be at least 10 seconds and at most the lifetime")
        if self.password_hash_profile not in {"rfc9106", "test-minimal"}:
            raise SettingsError("GATEWAY_PASSWORD_HASH_PROFILE must be rfc9106 or test-minimal")
        if self.is_production and self.password_hash_profile != "rfc9106":
            raise SettingsError("GATEWAY_PASSWORD_HASH_PROFILE must be rfc9106 in production")
        if self.is_production and not self.portal_cookie_secure:
            raise SettingsError("GATEWAY_PORTAL_COOKIE_SECURE cannot be false in production")
        if self.payees_file and not Path(self.payees_file).is_file():
            raise SettingsError(f"GATEWAY_PAYEES_FILE {self.payees_file!r} is not a file")
        self._validate_mail()
        if not 1 <= self.stale_warning_days < min(self.stale_draft_days, self.stale_returned_days):
            raise SettingsError("GATEWAY_STALE_WARNING_DAYS must be at least 1 and shorter than "
                                "GATEWAY_STALE_DRAFT_DAYS and GATEWAY_STALE_RETURNED_DAYS")
        if bool(self.oidc_issuer) != bool(self.oidc_jwks_url):
            raise SettingsError("GATEWAY_OIDC_ISSUER and GATEWAY_OIDC_JWKS_URL go together")
        self._validate_sso()

    @property
    def sso_enabled(self) -> bool:
        """True when hospital sign-on is configured (the sign-in page then offers it)."""
        return bool(self.sso_issuer)

    @property
    def sso_facilities(self) -> dict[str, tuple[str, ...]]:
        """The facility mapping: claim value → facility codes (empty when sign-on is off)."""
        if not self.sso_facility_map:
            return {}
        import json

        return {value: (codes,) if isinstance(codes, str) else tuple(codes)
                for value, codes in json.loads(self.sso_facility_map).items()}

    def _validate_sso(self) -> None:
        import json
        from urllib.parse import urlsplit

        if not self.sso_issuer:
            if self.sso_client_id or self.sso_client_secret or self.sso_facility_claim or self.sso_facility_map:
                raise SettingsError("the GATEWAY_SSO_* settings need GATEWAY_SSO_ISSUER")
            return
        parts = urlsplit(self.sso_issuer)
        loopback = parts.scheme == "http" and is_loopback_host(parts.hostname or "") and not self.is_production
        if not (parts.scheme == "https" or loopback) or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError("GATEWAY_SSO_ISSUER must be the provider's https issuer URL (http only to a "
                                "loopback address outside production)")
        if not self.sso_client_id or not self.sso_client_secret:
            raise SettingsError("GATEWAY_SSO_CLIENT_ID and GATEWAY_SSO_CLIENT_SECRET are required with "
                                "GATEWAY_SSO_ISSUER")
        if self.sso_token_auth_method not in ("client_secret_basic", "client_secret_post"):
            raise SettingsError("GATEWAY_SSO_TOKEN_AUTH_METHOD must be client_secret_basic or client_secret_post")
        if not self.sso_facility_claim:
            raise SettingsError("GATEWAY_SSO_FACILITY_CLAIM must name the ID-token claim mapped to facilities")
        try:
            mapping = json.loads(self.sso_facility_map or "")
        except ValueError:
            mapping = None
        valid = isinstance(mapping, dict) and mapping and all(
            isinstance(value, str) and value and (
                (isinstance(codes, str) and codes)
                or (isinstance(codes, list) and codes and all(isinstance(c, str) and c for c in codes)))
            for value, codes in mapping.items())
        if not valid:
            raise SettingsError('GATEWAY_SSO_FACILITY_MAP must be a JSON object of claim values to a facility '
                                'code or a list of them, e.g. {"records-lowell": "lowell-general"}')

    def _validate_mail(self) -> None:
        from email.utils import parseaddr
        from urllib.parse import urlsplit

        if self.smtp_security not in SMTP_SECURITY:
            raise SettingsError(f"GATEWAY_SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY)}")
        if not self.smtp_host or not 0 < self.smtp_port < 65536 or self.smtp_timeout <= 0:
            raise SettingsError("GATEWAY_SMTP_HOST, GATEWAY_SMTP_PORT (1-65535) and a positive "
                                "GATEWAY_SMTP_TIMEOUT are required")
        if self.is_production and self.smtp_security == "none" and not is_loopback_host(self.smtp_host):
            raise SettingsError("GATEWAY_SMTP_SECURITY cannot be none in production unless the SMTP host is on "
                                "loopback (a local relay)")
        if "@" not in parseaddr(self.mail_from)[1]:
            raise SettingsError("GATEWAY_MAIL_FROM must be an e-mail address (optionally with a display name)")
        parts = urlsplit(self.portal_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise SettingsError("GATEWAY_PORTAL_URL must be the portal's http(s) base address")
        if self.is_production and parts.scheme != "https":
            raise SettingsError("GATEWAY_PORTAL_URL must be https in production")

    def redacted(self) -> dict:
        """The settings as a dict with secrets and credentials in URLs masked, for logs and `gateway config`."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in {"aws_secret_access_key", "secret_key", "audit_chain_key", "smtp_password",
                          "sso_client_secret"} and value:
                value = "***"
            elif isinstance(value, str) and "://" in value and "@" in value:
                scheme, rest = value.split("://", 1)
                value = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (a local mail relay, `make run`'s catcher)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def derived_key(secret_key: str, purpose: str) -> str:
    """A development key for one purpose, derived from the secret key (HMAC-SHA256, hex)."""
    return hmac.new(secret_key.encode(), f"records-gateway:{purpose}".encode(), hashlib.sha256).hexdigest()


def _development_secret(data_dir: Path) -> str:
    """Read, or create once with owner-only permissions, the development secret key."""
    import secrets

    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _parse(f: dataclasses.Field, raw: str):
    """Turn one environment string into the field's type."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind in ("bool", "bool | None"):
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "Path":
            return Path(raw)
        if "None" in kind:
            return raw or None
        return raw
    except ValueError:
        raise SettingsError(f"{PREFIX}{f.name.upper()}: cannot read {raw!r} as {kind}") from None
