"""The CLI's own temporary Prefect server: used when no API is configured, gone when it is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]

# Runs `paperdigest run --offline` in a fresh interpreter, spying on the server it starts.
DRIVER = """
import json, sys, httpx
import prefect.flow_engine as engine
from flows import prefect_server
from flows.cli import main

started, heartbeats = [], []
real_heartbeats = engine._send_heartbeats

def heartbeats_spy(run, *args, **kwargs):
    heartbeats.append(run.heartbeat_seconds)
    return real_heartbeats(run, *args, **kwargs)

engine._send_heartbeats = heartbeats_spy
real_start = prefect_server.start_temporary_server

def spy():
    started.append(real_start())
    return started[-1]

prefect_server.start_temporary_server = spy
db, outbox, seeds = sys.argv[1:4]
code = main(["--db", db, "--outbox", outbox, "run", "--offline", seeds])
try:
    httpx.get(started[0].api_url + "/health", timeout=2)
    answering = True
except httpx.TransportError:
    answering = False
print(json.dumps({
    "exit_code": code,
    "servers": len(started),
    "child_exit": started[0].process.returncode,
    "answering_after": answering,
    "heartbeat_seconds": heartbeats,
    "server_modules": sorted(m for m in sys.modules if m.startswith("prefect.server")),
    "sqlalchemy": "sqlalchemy" in sys.modules,
}))
"""


def test_without_an_api_the_cli_runs_on_its_own_server_and_keeps_its_modules_out(tmp_path):
    """One child serves the run and is stopped after it; FastAPI/SQLAlchemy never load here;
    the flow run sends that short-lived server no heartbeats."""
    env = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    args = [str(tmp_path / "p.duckdb"), str(tmp_path / "out"), str(FIXTURES / "seeds")]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "exit_code": 0,
        "servers": 1,
        "child_exit": report["child_exit"],
        "answering_after": False,
        "heartbeat_seconds": [None],
        "server_modules": [],
        "sqlalchemy": False,
    }
    assert report["child_exit"] is not None  # reaped, not left running
    assert "ForkPoolWorker" not in done.stderr  # the site's workers end quietly
    assert len(list((tmp_path / "out").glob("*.html"))) == 1


def test_a_configured_api_is_used_as_it_is(prefect_harness) -> None:
    """With an API URL set (here the test harness's), no server of ours is started, and flow
    runs keep their heartbeats (a lasting server can tell from them that a run died)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    from flows.prefect_server import prefect_api

    configured = PREFECT_API_URL.value()
    with prefect_api() as started:
        assert started is None
        assert PREFECT_API_URL.value() == configured
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180


def test_the_cli_session_on_a_configured_api_sends_our_heartbeats(prefect_harness) -> None:
    """The CLI's Prefect session keeps the configured frequency for our heartbeats
    (`flows.heartbeats`) and switches Prefect's own thread off, whose join made runs end late."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    from flows import heartbeats
    from flows.cli import _prefect_session

    with _prefect_session():
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        assert heartbeats._own_frequency.get() == 180
    assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180
    assert heartbeats._own_frequency.get() is None


def test_a_server_that_does_not_start_in_time_is_one_clear_error() -> None:
    """The child is stopped and the error says what to do instead."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as TIMEOUT
    from prefect.settings import temporary_settings

    from flows.prefect_server import ServerStartError, start_temporary_server

    with temporary_settings({TIMEOUT: 0}), pytest.raises(ServerStartError) as caught:
        start_temporary_server()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Prefect's temporary server did not start within 0 s")
    assert "set PREFECT_API_URL" in message


def test_without_an_api_there_is_no_event_to_wait_for(monkeypatch) -> None:
    """With no API configured, waiting for queued events asks for no events worker: Prefect
    would start a temporary server of its own to make one."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.prefect_server import send_queued_events

    def no_worker(*args, **kwargs):
        raise AssertionError("an events worker was asked for")

    monkeypatch.setattr(EventsWorker, "instance", no_worker)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        send_queued_events()
