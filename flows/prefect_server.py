"""Prefect's temporary API server, started by us in a child process when none is configured.

Prefect's client would start the same server itself, but to do so it imports the server's own
modules (FastAPI, SQLAlchemy and 151 of Prefect's) into our process: ~80 MB of RSS that a
backfill then carries to its end. Starting the child here keeps those modules in the child.
The command line is the one Prefect's `SubprocessASGIServer` runs (pinned: prefect <3.9).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import prefect
from prefect.events.worker import EventsWorker
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    get_current_settings,
    temporary_settings,
)

HOST = "127.0.0.1"
START_ATTEMPTS = 3  # a port found free can be taken before the child binds it
EVENTS_WAIT_S = 10.0  # the longest a command waits for its last events to reach the API


class ServerStartError(RuntimeError):
    """The temporary server did not answer its health check in time."""


@dataclass
class TemporaryServer:
    """One child process serving Prefect's API on a loopback port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def api_url(self) -> str:
        """The URL Prefect's client talks to."""
        return f"http://{HOST}:{self.port}/api"

    def stop(self) -> None:
        """Terminate the child and reap it (killed if it ignores the signal for 5 s)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """Within the block Prefect talks to a configured API, or else to a temporary server of ours.

    Yields the temporary server's URL, or None when an API URL is already configured (a
    `prefect server start`, Prefect Cloud, or a test harness) or temporary servers are disabled.
    Flow runs on the temporary server send no heartbeats (see `_temporary_settings`).
    """
    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        try:
            yield None
        finally:
            send_queued_events()
        return
    server = start_temporary_server()
    try:
        with temporary_settings(updates=_temporary_settings(server)):
            try:
                yield server.api_url
            finally:
                send_queued_events()
    finally:
        server.stop()


def send_queued_events(timeout_s: float = EVENTS_WAIT_S) -> None:
    """Wait, at most `timeout_s`, until the events this process queued (task-run states,
    heartbeats) have been sent to the API.

    Prefect sends what is left at interpreter exit too, but by then our temporary server is
    gone, and on a lasting one it warns "Still processing items" on stderr for every event
    still queued: a run that ends at once (a busy warehouse) ends before its first heartbeat
    has left.
    """
    if not PREFECT_API_URL.value():
        return  # nowhere to send them (and asking for the worker would start a server)
    worker = EventsWorker.instance()  # the one the flow runs used: same settings, same key
    waiter = threading.Thread(target=worker.wait_until_empty, name="events-wait", daemon=True)
    waiter.start()
    waiter.join(timeout_s)


def _temporary_settings(server: TemporaryServer) -> dict:
    """Talk to `server`, and send no flow-run heartbeats to it.

    Heartbeats let a lasting server notice a run that died; this server dies with the run, so
    nothing would ever read them. They are not free: the engine joins the heartbeat thread when
    the flow returns, and it sleeps in 1-s steps, so every run waited up to a second at its end
    (a three-year backfill ended 0.0-1.0 s late). Runs on a configured server keep them.
    """
    return {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


def start_temporary_server() -> TemporaryServer:
    """Start the child and wait until its API answers; a port lost to a race is tried again."""
    timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    for _ in range(START_ATTEMPTS):
        server = TemporaryServer(_spawn(port := _free_port()), port)
        if _wait_healthy(server, timeout):
            return server
        server.stop()
        if server.process.returncode != 3:  # uvicorn's exit code for "address in use"
            break
    raise ServerStartError(
        f"Prefect's temporary server did not start within {timeout:g} s "
        f"(exit code {server.process.returncode}); set PREFECT_API_URL to a running server"
    )


def _spawn(port: int) -> subprocess.Popen[bytes]:
    args = [
        *(sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent)),
        *("--factory", "prefect.server.api.server:create_app", "--host", HOST),
        *("--port", str(port), "--log-level", "error", "--lifespan", "on"),
    ]
    env = {
        **os.environ,
        # what Prefect's own temporary server gets: no UI, the ephemeral server's settings
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _wait_healthy(server: TemporaryServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline and server.process.poll() is None:
            try:
                if client.get(f"{server.api_url}/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
