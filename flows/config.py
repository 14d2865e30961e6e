"""Run settings: environment variables first, command-line flags over them.

Every variable is listed in the README's configuration table; `tests/test_cli.py` checks that
the table and this module agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Environment variable → Settings field. Secrets (HF_TOKEN, the SMTP password) are read by the
# stage that uses them (flows.fetch, flows.deliver) and never pass through here.
ENV_VARS = {
    "PAPERDIGEST_DB": "db",
    "PAPERDIGEST_OUTBOX": "outbox",
    "PAPERDIGEST_SUBSCRIBERS": "subscribers",
    "PAPERDIGEST_MAIL_TO": "mail_to",
    "PAPERDIGEST_OPERATOR_EMAIL": "operator_email",
    "PAPERDIGEST_TIMEZONE": "timezone",
    "PAPERDIGEST_SOURCE": "source",
    "PAPERDIGEST_REFETCH_DAYS": "refetch_days",
    "PAPERDIGEST_GAP_DAYS": "gap_days",
    "PAPERDIGEST_WINDOW_DAYS": "window_days",
    "PAPERDIGEST_MIN_GAIN": "min_gain",
    "PAPERDIGEST_ON_EMPTY": "on_empty",
    "PAPERDIGEST_DEADMAN_WEEKDAYS": "deadman_weekdays",
    "PAPERDIGEST_LOCK_WAIT": "lock_wait",
    "PAPERDIGEST_CRON": "cron",
    "PAPERDIGEST_TASK_RETRIES": "task_retries",
    "PAPERDIGEST_SMTP_BLOCK": "smtp_block",
    "PAPERDIGEST_UNSUBSCRIBE_URL": "unsubscribe_url",
    "PAPERDIGEST_UNSUBSCRIBE_MAILTO": "unsubscribe_mailto",
    "PAPERDIGEST_TASK_RETRY_DELAY": "task_retry_delay",
    "PAPERDIGEST_RATE_LIMIT": "rate_limit",
    "PAPERDIGEST_RANK_TOP_K": "rank_top_k",
    "PAPERDIGEST_RANK_CACHE": "rank_cache",
    "PAPERDIGEST_EMBED_MODEL_DIR": "embed_model_dir",
    "PAPERDIGEST_SITE_DIR": "site_dir",
    "PAPERDIGEST_SITE_URL": "site_url",
    "PAPERDIGEST_EMAIL_FULL_PAPERS": "email_full_papers",
}


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know that is not a secret."""

    db: Path = PROJECT_ROOT / "warehouse" / "papers.duckdb"
    outbox: Path = PROJECT_ROOT / "outbox"
    subscribers: Path | None = None  # default: subscribers.json beside the warehouse
    mail_to: str = "me@localhost"  # who gets the digest when there is no subscribers file
    operator_email: str | None = None  # who gets the dead-man's-switch alert
    timezone: str = "UTC"
    source: str = "api"
    refetch_days: int = 7
    gap_days: int = 30
    window_days: int = 7
    min_gain: int = 5
    on_empty: str = "note"  # skip | note
    deadman_weekdays: int = 2
    lock_wait: float = 0.0
    cron: str = "0 7 * * 1-5"
    # A day whose fetch still fails after the HTTP client's own retries is fetched again this
    # often: a task retry in daily runs, another round of fetch tasks in a backfill.
    task_retries: int = 2
    task_retry_delay: float = 30.0
    smtp_block: str | None = None  # a Prefect EmailServerCredentials block to send with
    unsubscribe_url: str | None = None  # https URL; "{address}" is replaced by the reader's
    unsubscribe_mailto: str | None = None  # address that takes "unsubscribe" mails
    # Client-side request budget per 5 minutes: "api=500,pages=100" (the default), or "off";
    # lifting or raising it is refused against huggingface.co (flows.fetch reads it).
    rate_limit: str | None = None
    rank_top_k: int = 10  # papers in each reader's "For you" section (readers with a library)
    rank_cache: Path | None = None  # default: rank-cache/ beside the warehouse
    embed_model_dir: Path | None = None  # a fastembed model on disk; unset = TF-IDF ranking
    site_dir: Path | None = None  # the published site; default: site/ beside the warehouse
    site_url: str | None = None  # the URL the site is served from (feeds, "more on the web")
    email_full_papers: int = 25  # papers per email section that always keep full detail

    @property
    def site_path(self) -> Path:
        """The published site's folder: explicit, or `site/` beside the warehouse."""
        return self.site_dir or self.db.parent / "site"

    @property
    def subscribers_path(self) -> Path:
        """The subscribers file: explicit, or `subscribers.json` beside the warehouse."""
        return self.subscribers or self.db.parent / "subscribers.json"

    @property
    def rank_cache_path(self) -> Path:
        """The ranking's model cache: explicit, or `rank-cache/` beside the warehouse."""
        return self.rank_cache or self.db.parent / "rank-cache"

    @property
    def tz(self) -> ZoneInfo:
        """The configured timezone as a ZoneInfo (validated)."""
        return zone(self.timezone)

    def today(self) -> date:
        """Today's date in the configured timezone."""
        return datetime.now(self.tz).date()

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the non-None overrides applied (flags beat env)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return _validated(replace(self, **given))


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, then the given overrides (command-line flags)."""
    environ = os.environ if environ is None else environ
    types = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    for var, name in ENV_VARS.items():
        raw = environ.get(var)
        if raw:
            values[name] = _convert(var, raw, types[name])
    settings = Settings(**values).with_overrides(**overrides)
    check_rate_limit(settings.rate_limit, environ)
    return settings


def zone(name: str) -> ZoneInfo:
    """A timezone by IANA name; refuses an unknown one up front with a clear message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown timezone {name!r} (use an IANA name like Europe/Paris)"
        ) from exc


def _convert(var: str, raw: str, kind: str) -> Any:
    try:
        if "Path" in kind:
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind}") from exc
    return raw


def check_rate_limit(value: str | None, environ: Mapping[str, str]) -> None:
    """Refuse a malformed rate limit, or one lifted or raised against huggingface.co."""
    if not value:
        return
    from flows.fetch import ENV_BASE_URL, FetchSettings, parse_rate_limit

    try:
        limits = parse_rate_limit(value)
        base_url = environ.get(ENV_BASE_URL, "").strip()
        FetchSettings(**limits, **({"base_url": base_url} if base_url else {}))
    except ValueError as exc:
        raise ConfigError(f"PAPERDIGEST_RATE_LIMIT={value!r}: {exc}") from None


def _validated(settings: Settings) -> Settings:
    zone(settings.timezone)
    if settings.source not in ("api", "html"):
        raise ConfigError(f"source must be api or html, not {settings.source!r}")
    if settings.on_empty not in ("skip", "note"):
        raise ConfigError(f"on_empty must be skip or note, not {settings.on_empty!r}")
    for name in (
        "refetch_days",
        "gap_days",
        "window_days",
        "min_gain",
        "deadman_weekdays",
        "task_retries",
        "email_full_papers",
    ):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must not be negative")
    if settings.rank_top_k < 1:
        raise ConfigError("rank_top_k must be at least 1")
    if settings.site_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", settings.site_url):
        raise ConfigError(f"site URL must be an http(s) URL, not {settings.site_url!r}")
    return settings
