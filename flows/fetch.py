"""Fetch Hugging Face Daily Papers pages over HTTP, politely, and hand them on as `RawPage`s.

Pure I/O: this module never parses papers and never touches the database. It only checks that
a 200 answer is what was asked for (a complete JSON array from the API, a complete papers page
from the website) so that an error or challenge page is never archived and parsed as papers.

What counts against the client-side rate limit: every HTTP request this process sends to the
configured host — first attempts, urllib3 retries (429/5xx/connection errors), our own retries
of bad 200 answers and each followed redirect. API calls and page loads have separate budgets.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from html import unescape
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from flows import PROJECT_URL, __version__
from flows.capture import capture_from_response
from flows.models import RawPage

log = logging.getLogger(__name__)

USER_AGENT = f"paperdigest/{__version__} (+{PROJECT_URL})"
DEFAULT_BASE_URL = "https://huggingface.co"

ENV_BASE_URL = "PAPERDIGEST_HF_URL"
ENV_TOKEN = "HF_TOKEN"
ENV_READ_TIMEOUT = "PAPERDIGEST_HTTP_TIMEOUT"
ENV_RETRIES = "PAPERDIGEST_HTTP_RETRIES"
ENV_RATE_LIMIT = "PAPERDIGEST_RATE_LIMIT"
DEFAULT_API_PER_5MIN, DEFAULT_PAGES_PER_5MIN = 500, 100
PROTECTED_HOST = "huggingface.co"  # its own limits; a mirror or replay server may lift ours

API_PATH = "/api/daily_papers"
HTML_PATHS = {
    "day": "/papers/date/{key}",
    "week": "/papers/week/{key}",
    "month": "/papers/month/{key}",
    "trending": "/papers/trending",
    "latest": "/papers",
}
HTML_KEY_PATTERNS = {
    "day": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "week": re.compile(r"\d{4}-W\d{2}"),
    "month": re.compile(r"\d{4}-\d{2}"),
}

RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
BAD_RESPONSE_RETRIES = 2  # a bad 200 (challenge page, truncated body) is tried 3 times in all
BODY_DEADLINE_READS = 4  # a whole body may take 4 read timeouts (30 s → 2 minutes)
MAX_BODY_BYTES = 16 * 1024 * 1024  # Hugging Face's largest page is ~1.5 MB
MAX_API_PAGES = 50  # 5,000 papers a day: far beyond any real day, so more means a paging bug
POOL_SIZE = 16  # connections kept per host, enough for the flow's concurrent fetch threads
TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
INCOMPLETE_RE = re.compile(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)")


# ---- settings and errors ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """How to reach Hugging Face and how politely; `from_env` reads the environment."""

    base_url: str = DEFAULT_BASE_URL
    token: str | None = field(default=None, repr=False)  # a secret: never in repr or logs
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    retry_after_cap: float = 60.0
    api_per_5min: int = DEFAULT_API_PER_5MIN
    pages_per_5min: int = DEFAULT_PAGES_PER_5MIN
    page_limit: int = 100
    rate_window_s: float = 300.0  # the limits above apply per window; tests shorten it
    rate_limited: bool = True  # False (`PAPERDIGEST_RATE_LIMIT=off`): no client-side limit

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        for name in ("connect_timeout", "read_timeout", "retry_after_cap", "rate_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("api_per_5min", "pages_per_5min", "page_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_retries < 0 or self.backoff_factor < 0:
            raise ValueError("max_retries and backoff_factor must not be negative")
        if is_protected_host(self.base_url) and (
            not self.rate_limited
            or self.api_per_5min > DEFAULT_API_PER_5MIN
            or self.pages_per_5min > DEFAULT_PAGES_PER_5MIN
        ):
            raise ValueError(
                f"the rate limit may be lifted or raised only for a mirror, not {PROTECTED_HOST}"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> FetchSettings:
        """Settings from PAPERDIGEST_HF_URL, HF_TOKEN, PAPERDIGEST_HTTP_TIMEOUT/_RETRIES and
        PAPERDIGEST_RATE_LIMIT."""
        rate_limit = os.environ.get(ENV_RATE_LIMIT, "")
        try:
            values: dict[str, Any] = parse_rate_limit(rate_limit)
        except ValueError as exc:
            raise ValueError(f"{ENV_RATE_LIMIT}={rate_limit!r}: {exc}") from None
        if base_url := os.environ.get(ENV_BASE_URL, "").strip():
            values["base_url"] = base_url
        if token := os.environ.get(ENV_TOKEN, "").strip():
            values["token"] = token
        if (timeout := _env_number(ENV_READ_TIMEOUT, float)) is not None:
            values["read_timeout"] = timeout
        if (retries := _env_number(ENV_RETRIES, int)) is not None:
            values["max_retries"] = retries
        return cls(**(values | overrides))


def parse_rate_limit(text: str) -> dict[str, Any]:
    """`PAPERDIGEST_RATE_LIMIT` as FetchSettings fields: "" (the defaults), "off", or
    "api=N,pages=M" (requests per 5 minutes; either may be left out). ValueError if malformed."""
    value = text.strip().lower()
    if not value:
        return {}
    if value == "off":
        return {"rate_limited": False}
    names = {"api": "api_per_5min", "pages": "pages_per_5min"}
    fields: dict[str, Any] = {}
    for part in value.split(","):
        name, _, number = part.partition("=")
        if name.strip() not in names or not number.strip().isdigit() or int(number) < 1:
            raise ValueError("expected 'off' or e.g. 'api=500,pages=100' (requests per 5 minutes)")
        fields[names[name.strip()]] = int(number)
    return fields


def is_protected_host(base_url: str) -> bool:
    """True for huggingface.co itself (and its subdomains), whose rate limit we keep to."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host == PROTECTED_HOST or host.endswith("." + PROTECTED_HOST)


def _env_number(name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


# Tokens of the clients of this process. A server may echo the Authorization header into its
# error page; every error reason and log line of this module is scrubbed of them.
_SECRETS: set[str] = set()


def redact(text: str) -> str:
    """`text` with every known token replaced by `[redacted]`."""
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    return text


class _RedactingFilter(logging.Filter):
    """Scrubs tokens from this module's log records, whatever their arguments hold."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg, record.args = redact(record.getMessage()), None
        return True


log.addFilter(_RedactingFilter())


class FetchError(Exception):
    """A page could not be fetched, or the answer was not what was asked for."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact(url)
        self.reason = redact(" ".join(reason.split()))  # one line, whatever the server sent
        super().__init__(f"{self.url}: {self.reason}")

    def __reduce__(self) -> tuple[type[FetchError], tuple[str, str]]:
        # Picklable across process/worker boundaries despite the two-argument constructor.
        return (type(self), (self.url, self.reason))


class _BadResponse(Exception):
    """A 200 answer that is not what was asked for: retried a few times, then a FetchError."""


# ---- rate limiting --------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window_s` seconds; `acquire` blocks until allowed."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take one slot, sleeping while the window is full; returns the seconds waited."""
        waited = 0.0
        while (wait := self._try_take()) > 0:
            log.debug(
                "rate limit %d per %gs reached; waiting %.2fs", self.limit, self.window_s, wait
            )
            sleep(wait)
            waited += wait
        return waited

    def reconfigure(self, limit: int, window_s: float) -> None:
        """Adopt new limits, keeping the requests already made in the window."""
        with self._lock:
            self.limit, self.window_s = limit, window_s

    def _try_take(self) -> float:
        # The lock is held only to count; sleeping happens outside so other threads can proceed.
        with self._lock:
            now = self._clock()
            while self._stamps and self._stamps[0] <= now - self.window_s:
                self._stamps.popleft()
            if len(self._stamps) < self.limit:
                self._stamps.append(now)
                return 0.0
            return max(self._stamps[0] + self.window_s - now, 1e-3)


class Unlimited:
    """A limiter that never waits (`PAPERDIGEST_RATE_LIMIT=off`, mirrors only)."""

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take a slot at once."""
        return 0.0


# One limiter per (origin, kind) for the whole process, so every client and thread shares it.
_LIMITERS: dict[tuple[str, str], SlidingWindowLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(
    origin: str, kind: str, limit: int, window_s: float, clock: Callable[[], float]
) -> SlidingWindowLimiter:
    """The process-wide limiter for `kind` ("api" or "page") requests to `origin`."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((origin, kind))
        if limiter is None:
            limiter = _LIMITERS[(origin, kind)] = SlidingWindowLimiter(limit, window_s, clock)
        elif (limiter.limit, limiter.window_s) != (limit, window_s):
            limiter.reconfigure(limit, window_s)  # the newest settings win
        return limiter


def reset_rate_limits() -> None:
    """Forget all shared rate-limit state (for tests that reuse one server)."""
    with _LIMITERS_LOCK:
        _LIMITERS.clear()


# ---- urllib3 retries ------------------------------------------------------------------------


class PoliteRetry(Retry):
    """urllib3 Retry that caps Retry-After, sleeps via an injectable function and spends a
    rate-limit slot on every retry."""

    def __init__(
        self,
        *args: Any,
        retry_after_cap: float = 60.0,
        limiter: SlidingWindowLimiter | Unlimited | None = None,
        sleep_fn: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap
        self.limiter = limiter
        self.sleep_fn = sleep_fn

    def new(self, **kw: Any) -> PoliteRetry:
        """A copy with updated counters (urllib3 makes one per attempt); keeps our extras."""
        retry = super().new(**kw)
        retry.retry_after_cap = self.retry_after_cap
        retry.limiter = self.limiter
        retry.sleep_fn = self.sleep_fn
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds to wait from a Retry-After header, never more than `retry_after_cap`."""
        return min(super().parse_retry_after(retry_after), self.retry_after_cap)

    def sleep(self, response: Any = None) -> None:
        """Wait before a retry (Retry-After if given, else backoff), then take a rate slot."""
        delay = None
        if self.respect_retry_after_header and response is not None:
            delay = self.get_retry_after(response)
        if not delay:
            delay = self.get_backoff_time()
        if delay > 0:
            log.info("retrying in %.2fs", delay)
            self.sleep_fn(delay)
        if self.limiter is not None:
            self.limiter.acquire(self.sleep_fn)


def _retry_policy(
    settings: FetchSettings,
    limiter: SlidingWindowLimiter | Unlimited,
    sleep: Callable[[float], None],
) -> PoliteRetry:
    return PoliteRetry(
        total=settings.max_retries,
        redirect=False,  # redirects are followed by hand, only on the configured host
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        backoff_factor=settings.backoff_factor,
        backoff_jitter=settings.backoff_factor,
        backoff_max=settings.retry_after_cap,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand back the last 429/5xx so the error names the status
        retry_after_cap=settings.retry_after_cap,
        limiter=limiter,
        sleep_fn=sleep,
    )


class _BearerAuth(requests.auth.AuthBase):
    """Sends the token; set as session auth so a ~/.netrc entry cannot replace it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


# ---- the client -----------------------------------------------------------------------------


class HFClient:
    """One polite HTTP session to Hugging Face; safe to share between threads."""

    def __init__(
        self,
        settings: FetchSettings,
        *,
        validators: Callable[[str], tuple[str | None, str | None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        if settings.token:
            _SECRETS.add(settings.token)
        self._lookup_validators = validators
        self._lookup_lock = threading.Lock()  # the caller's lookup may not be thread-safe
        self._memory_lock = threading.Lock()
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._full_api_pages: set[str] = set()
        self._sleep = sleep
        self._origin = _origin(settings.base_url)
        window = settings.rate_window_s
        self._limiters: dict[str, SlidingWindowLimiter | Unlimited] = {
            "api": shared_limiter(self._origin, "api", settings.api_per_5min, window, clock),
            "page": shared_limiter(self._origin, "page", settings.pages_per_5min, window, clock),
        }
        if not settings.rate_limited:  # a mirror or replay server: no client-side limit
            self._limiters = {"api": Unlimited(), "page": Unlimited()}
        self._session = self._new_session()

    def __repr__(self) -> str:
        return f"HFClient(base_url={self.settings.base_url!r})"

    def __enter__(self) -> HFClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its connections."""
        self._session.close()

    # -- URLs --

    def api_url(self, day: date, page: int = 0) -> str:
        """The API URL of one page of one digest day."""
        query = f"date={day.isoformat()}&limit={self.settings.page_limit}&p={page}"
        return f"{self.settings.base_url}{API_PATH}?{query}"

    def page_url(self, kind: str, key: str | date | None = None) -> str:
        """The website URL of a day, week, month, trending or latest papers page."""
        if kind not in HTML_PATHS:
            raise ValueError(f"unknown page kind {kind!r}; expected one of {sorted(HTML_PATHS)}")
        key = key.isoformat() if isinstance(key, date) else key
        pattern = HTML_KEY_PATTERNS.get(kind)
        if pattern is None and key is not None:
            raise ValueError(f"page kind {kind!r} takes no key, got {key!r}")
        if pattern is not None and (key is None or not pattern.fullmatch(key)):
            raise ValueError(f"page kind {kind!r} needs a key like {pattern.pattern}, got {key!r}")
        return self.settings.base_url + HTML_PATHS[kind].format(key=key)

    # -- public fetches --

    def fetch_day(self, day: date, source: str) -> list[RawPage]:
        """All pages of one digest day from `source` ("api" or "html")."""
        if source == "api":
            return self.fetch_api_day(day)
        if source == "html":
            return [self.fetch_html("day", day)]
        raise ValueError(f"unknown source {source!r}; expected 'api' or 'html'")

    def fetch_api_day(self, day: date) -> list[RawPage]:
        """Every API page of one digest day, paging while pages come back full."""
        pages: list[RawPage] = []
        for number in range(MAX_API_PAGES):
            url = self.api_url(day, number)
            page, n_items = self._fetch(url, "api", day)
            _refuse_repeated_page(url, pages, page)
            pages.append(page)
            if not self._api_has_more(url, page, n_items, self.api_url(day, number + 1)):
                return pages
        raise FetchError(self.api_url(day, 0), f"more than {MAX_API_PAGES} full pages")

    def fetch_html(self, kind: str, key: str | date | None = None) -> RawPage:
        """One website page: kind "day" (key YYYY-MM-DD), "week" (2024-W31), "month"
        (2024-08), "trending" or "latest" (no key)."""
        url = self.page_url(kind, key)
        digest_date = date.fromisoformat(str(key)) if kind == "day" else None
        page, _ = self._fetch(url, "page", digest_date)
        return page

    # -- paging --

    def _api_has_more(self, url: str, page: RawPage, n_items: int | None, next_url: str) -> bool:
        # n_items: what _accept counted when it checked the JSON (None for a 304, no body).
        if page.not_modified or n_items is None:
            # Unchanged since last time: it was full then if we saw it full in this process, or
            # if the next page was fetched before (we only ask for a next page after a full one).
            with self._memory_lock:
                seen_full = url in self._full_api_pages
            return seen_full or any(self._validators_for(next_url))
        if n_items < self.settings.page_limit:
            return False
        with self._memory_lock:
            self._full_api_pages.add(url)
        return True

    # -- one URL, with retries of bad answers --

    def _fetch(self, url: str, kind: str, digest_date: date | None) -> tuple[RawPage, int | None]:
        """The page at url, and its number of items when it is a 200 API answer."""
        validators = self._validators_for(url)
        for attempt in range(BAD_RESPONSE_RETRIES + 1):
            try:
                response = self._get_following_redirects(url, kind, validators)
                return self._accept(url, kind, digest_date, response, validators)
            except _BadResponse as bad:
                if attempt == BAD_RESPONSE_RETRIES:
                    raise FetchError(url, f"{bad} (tried {attempt + 1} times)") from None
                delay = self._bad_response_delay(attempt)
                log.warning("%s: %s; retrying in %.2fs", url, bad, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _bad_response_delay(self, attempt: int) -> float:
        factor = self.settings.backoff_factor
        delay = factor * 2**attempt + random.uniform(0, factor)
        return min(delay, self.settings.retry_after_cap)

    def _get_following_redirects(
        self, url: str, kind: str, validators: tuple[str | None, str | None]
    ) -> requests.Response:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get(url, current, kind, validators)
            if response.status_code not in REDIRECT_STATUSES:
                return response
            current = self._redirect_target(url, current, response)
            log.debug("%s: redirected to %s", url, current)
        raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")

    def _redirect_target(self, url: str, current: str, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise FetchError(url, f"HTTP {response.status_code} redirect without a Location")
        target = urljoin(current, location)
        if _origin(target) != self._origin:
            # Name only the host: a foreign Location may carry signed query strings.
            raise FetchError(url, f"redirect to foreign host {urlsplit(target).netloc} refused")
        return target

    def _get(
        self, url: str, current: str, kind: str, validators: tuple[str | None, str | None]
    ) -> requests.Response:
        self._limiters[kind].acquire(self._sleep)
        log.debug("GET %s", current)
        requested_at = datetime.now(UTC)
        try:
            response = self._session.get(
                current,
                headers=_request_headers(kind, validators),
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                allow_redirects=False,
                stream=True,
            )
            self._read_body(url, response)
            # When the request went out: the capture time when the Date header is unusable.
            response.requested_at = requested_at  # type: ignore[attr-defined]
            return response
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise _BadResponse(_broken_body_reason(exc)) from None
        except requests.RequestException as exc:
            raise FetchError(url, _transport_reason(exc, self.settings)) from None

    def _read_body(self, url: str, response: requests.Response) -> None:
        """Read the whole body within a total deadline and a size cap.

        The read timeout bounds each socket read only: a server dripping a byte at a time
        would otherwise hold a fetch forever.
        """
        limit_s = self.settings.read_timeout * BODY_DEADLINE_READS
        deadline = time.monotonic() + limit_s
        chunks, size = [], 0
        try:
            while chunk := response.raw.read1(64 * 1024, decode_content=True):
                size += len(chunk)
                chunks.append(chunk)
                if size > MAX_BODY_BYTES:
                    raise FetchError(url, f"answer larger than {MAX_BODY_BYTES:,} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(
                        url, f"timeout: answer not complete after {limit_s:g}s (slow drip)"
                    )
        except ProtocolError as exc:
            raise _BadResponse(_broken_body_reason(exc)) from None
        finally:
            response.close()
        response._content = b"".join(chunks)  # what `response.content` returns from now on
        response._content_consumed = True

    # -- judging the answer --

    def _accept(
        self,
        url: str,
        kind: str,
        digest_date: date | None,
        response: requests.Response,
        validators: tuple[str | None, str | None],
    ) -> tuple[RawPage, int | None]:
        status = response.status_code
        if status == 304 and any(validators):
            return self._page(url, kind, digest_date, response, b"", validators), None
        if status != 200:
            raise FetchError(url, _status_reason(response, self.settings))
        body = response.content
        _check_length(response, body)
        n_items = None
        if kind == "api":
            decoded = _check_json_array(response, body)
            n_items = len(decoded)
        else:
            decoded = None
            _check_papers_html(response, body)
        page = self._page(url, kind, digest_date, response, body, validators, decoded)
        self._remember_validators(url, page.etag, page.last_modified)
        return page, n_items

    def _page(
        self,
        url: str,
        kind: str,
        digest_date: date | None,
        response: requests.Response,
        body: bytes,
        validators: tuple[str | None, str | None],
        decoded: list[object] | None = None,
    ) -> RawPage:
        etag = response.headers.get("ETag")
        modified = response.headers.get("Last-Modified")
        if response.status_code == 304:  # a 304 may omit the validators; ours still hold
            etag, modified = etag or validators[0], modified or validators[1]
        received_at = datetime.now(UTC)
        requested_at = getattr(response, "requested_at", received_at)
        captured_at, basis = capture_from_response(
            response.headers.get("Date"), requested_at, received_at
        )
        return RawPage(
            source="api" if kind == "api" else "html",
            location=url,
            body=body,
            digest_date=digest_date,
            fetched_at=received_at,
            http_status=response.status_code,
            content_type=response.headers.get("Content-Type"),
            etag=etag,
            last_modified=modified,
            captured_at=captured_at,
            capture_basis=basis,
            decoded=decoded,
        )

    # -- conditional-request validators --

    def _validators_for(self, url: str) -> tuple[str | None, str | None]:
        with self._memory_lock:
            remembered = self._validators.get(url)
        if remembered is not None:
            return remembered
        if self._lookup_validators is None:
            return (None, None)
        try:
            with self._lookup_lock:
                found = self._lookup_validators(url)
            return tuple(found) if found else (None, None)
        except Exception as exc:  # a cache miss is always safe: fetch unconditionally
            log.warning("validator lookup for %s failed (%s); fetching unconditionally", url, exc)
            return (None, None)

    def _remember_validators(self, url: str, etag: str | None, modified: str | None) -> None:
        if etag or modified:
            with self._memory_lock:
                self._validators[url] = (etag, modified)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        if self.settings.token:
            session.auth = _BearerAuth(self.settings.token)
        for prefix, kind in ((self.settings.base_url + API_PATH, "api"), (self._origin, "page")):
            retry = _retry_policy(self.settings, self._limiters[kind], self._sleep)
            adapter = HTTPAdapter(max_retries=retry, pool_maxsize=POOL_SIZE)
            session.mount(prefix, adapter)  # requests picks the longest matching prefix
        # Proxies, CA bundle and ~/.netrc from the environment, read once here: requests reads
        # them again for every request (the whole environment, twice: 0.45 ms a request, half
        # a second of a three-year HTML backfill), and every request here goes to one origin.
        env = session.merge_environment_settings(self.settings.base_url, {}, None, None, None)
        session.proxies.update(env["proxies"])
        session.verify, session.cert = env["verify"], env["cert"]
        if session.auth is None:
            session.auth = requests.utils.get_netrc_auth(self.settings.base_url)
        session.trust_env = False
        return session


# ---- helpers --------------------------------------------------------------------------------


def _origin(url: str) -> str:
    """scheme://host:port with the default port made explicit, for same-host comparisons."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _request_headers(kind: str, validators: tuple[str | None, str | None]) -> dict[str, str]:
    headers = {"Accept": "application/json" if kind == "api" else "text/html"}
    etag, modified = validators
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    return headers


def _refuse_repeated_page(url: str, pages: list[RawPage], page: RawPage) -> None:
    """A server that ignores `p` sends page 0 forever; stop instead of paging to the cap."""
    previous = pages[-1] if pages else None
    if previous and not page.not_modified and page.body == previous.body:
        raise FetchError(url, "page repeats the previous page; the server ignores paging")


def _media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _html_title(body: bytes) -> str | None:
    match = TITLE_RE.search(body[:65536])
    if not match:
        return None
    title = " ".join(unescape(match.group(1).decode("utf-8", "replace")).split())
    return title[:80]


def _html_hint(body: bytes) -> str:
    """' (HTML error page 'Title')' when a body is HTML, so errors say what came back."""
    if b"<html" not in body[:4096].lower() and not body.lstrip().startswith(b"<"):
        return ""
    title = _html_title(body)
    return f" (HTML error page '{title}')" if title else " (an HTML page)"


def _check_length(response: requests.Response, body: bytes) -> None:
    declared = response.headers.get("Content-Length", "")
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    # With gzip etc. the header counts compressed bytes; urllib3 checks those itself.
    if declared.isdigit() and encoding == "identity" and int(declared) != len(body):
        raise _BadResponse(f"truncated body: {len(body)} of {declared} bytes")


def _check_json_array(response: requests.Response, body: bytes) -> list[object]:
    """Refuse anything but a JSON array; return it (for paging, and for the parser: one
    decode per page), numbers as Decimal as the parser reads them."""
    media = _media_type(response)
    if media != "application/json" and not media.endswith("+json"):
        raise _BadResponse(f"expected JSON, got {media or 'no content type'}{_html_hint(body)}")
    try:
        data = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise _BadResponse(f"truncated or malformed JSON ({len(body)} bytes): {exc}") from None
    except RecursionError:
        raise _BadResponse(f"JSON nested too deeply ({len(body)} bytes)") from None
    if not isinstance(data, list):
        detail = f": {str(data.get('error'))[:120]}" if isinstance(data, dict) else ""
        raise _BadResponse(f"expected a JSON array, got {type(data).__name__}{detail}")
    return data


def _check_papers_html(response: requests.Response, body: bytes) -> None:
    media = _media_type(response)
    if media != "text/html":
        raise _BadResponse(f"expected text/html, got {media or 'no content type'}")
    if b"</html>" not in body[-65536:].lower():
        raise _BadResponse(f"truncated HTML ({len(body)} bytes, no </html>)")
    if b'data-target="DailyPapers"' not in body and b"<article" not in body.lower():
        title = _html_title(body)
        raise _BadResponse(f"HTML error page '{title}'" if title else "HTML page without papers")


def _status_reason(response: requests.Response, settings: FetchSettings) -> str:
    status = response.status_code
    text = f"HTTP {status} {response.reason or ''}".strip()
    if status == 404:
        return f"not found ({text})"
    if status in RETRY_STATUSES:
        return f"{text} after {settings.max_retries} retries{_html_hint(response.content)}"
    if status in (401, 403) and settings.token:
        return f"{text} (is {ENV_TOKEN} valid?){_html_hint(response.content)}"
    return f"{text}{_html_hint(response.content)}"


def _transport_reason(exc: requests.RequestException, settings: FetchSettings) -> str:
    root = _root_cause(exc)
    retried = f"(retried up to {settings.max_retries} times)"
    if isinstance(root, NewConnectionError):
        return f"connection failed: {_root_reason(exc)} {retried}"
    if isinstance(root, ConnectTimeoutError):
        return f"connect timeout after {settings.connect_timeout:g}s {retried}"
    if isinstance(root, ReadTimeoutError) or isinstance(exc, requests.ReadTimeout):
        return f"read timeout after {settings.read_timeout:g}s {retried}"
    return f"{type(exc).__name__}: {_root_reason(exc)} {retried}"


def _root_cause(exc: BaseException) -> BaseException:
    """The urllib3 error inside requests' wrapping (MaxRetryError.reason, or the arg)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    return getattr(inner, "reason", None) or inner


def _root_reason(exc: BaseException) -> str:
    text = str(_root_cause(exc))
    match = ERRNO_RE.search(text)
    return match.group(1).strip() if match else text[-200:]


def _broken_body_reason(exc: Exception) -> str:
    """Why reading a body failed: a short read (with byte counts) or a bad encoding."""
    incomplete = INCOMPLETE_RE.search(str(exc))
    if incomplete:
        return f"truncated body: {incomplete[1]} bytes read, {incomplete[2]} more expected"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return f"undecodable body: {_root_reason(exc)}"
    return f"truncated body: {_root_reason(exc)}"
