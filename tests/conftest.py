"""Shared fixtures. Prefect's home goes to a temporary folder before Prefect is imported, so
tests never touch a user's ~/.prefect (the test harness does not isolate result storage)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_PREFECT_HOME = tempfile.mkdtemp(prefix="paperdigest-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Tests never see the developer's own configuration.
_KEEP = {"PAPERDIGEST_REGEN_GOLDEN"}  # the documented switch that regenerates golden files
for _var in [v for v in os.environ if v.startswith("PAPERDIGEST_") or v == "HF_TOKEN"]:
    if _var in _KEEP:
        continue
    del os.environ[_var]

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = sorted((FIXTURES / "seeds").glob("*.txt"))


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (it takes 10–15 s to start on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A warehouse file path in a fresh temporary folder."""
    return tmp_path / "papers.duckdb"
