"""Prefect's environment, set before Prefect is first imported (it reads its settings once).

Its own module so that the CLI and the flow modules both reach it without importing each other.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from flows.config import PROJECT_ROOT


def prepare_prefect_env(environ: MutableMapping[str, str] = os.environ) -> None:
    """Keep Prefect's state out of the user's own ~/.prefect and give its server time to start."""
    environ.setdefault("PREFECT_HOME", str(PROJECT_ROOT / ".prefect"))
    environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    environ.setdefault("DO_NOT_TRACK", "1")
    environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
