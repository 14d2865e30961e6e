"""Fixtures of the reliability suite: the Prefect server URL for CLI subprocesses, SMTP sinks,
and an environment without any PAPERDIGEST_* setting but the ones a test chooses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from .support import SinkHandler, start_smtp


@pytest.fixture(scope="session")
def prefect_api_url(prefect_harness) -> str:
    """The API URL of the session's Prefect test server, for `paperdigest` subprocesses."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    assert url and url.startswith("http://127.0.0.1"), url
    return str(url)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No subscribers file unless a test writes one; mail goes to reader@example.org."""
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "subscribers.json"))
    monkeypatch.setenv("PAPERDIGEST_MAIL_TO", "reader@example.org")
    for name in ("PAPERDIGEST_SMTP_HOST", "PAPERDIGEST_HF_URL", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    """A threaded local HTTP server of its own for one test."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def sink() -> SinkHandler:
    """The SMTP sink's handler: what it received, and what it should refuse."""
    return SinkHandler()


@pytest.fixture
def smtp_server(sink: SinkHandler) -> Iterator[int]:
    """A plain SMTP server on 127.0.0.1 storing mail in `sink`; yields its port."""
    controller = start_smtp(sink)
    yield controller.port
    controller.stop()
