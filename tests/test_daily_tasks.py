"""What a daily run leaves in Prefect: one fetch task per day, one load, the diff, the delivery,
every one Completed and untagged (a tag costs a concurrency lease per run), and its artifact."""

from __future__ import annotations

import time
from datetime import date

import pytest

from tests.replay import serve_days

pytestmark = pytest.mark.prefect

TODAY = date(2025, 7, 1)


@pytest.fixture
def online_env(httpserver, monkeypatch, tmp_path):
    """Point the fetch stage at the local replay server, with fast retries and no mailing list."""
    monkeypatch.setenv("PAPERDIGEST_HF_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("PAPERDIGEST_HTTP_RETRIES", "1")
    monkeypatch.setenv("PAPERDIGEST_TASK_RETRIES", "0")
    monkeypatch.setenv("PAPERDIGEST_SUBSCRIBERS", str(tmp_path / "none.json"))
    monkeypatch.setenv("PAPERDIGEST_MAIL_TO", "reader@example.org")
    return tmp_path


def _task_runs(flow_run_id, expected: int, timeout_s: float = 60.0) -> list:
    """The flow run's task runs, once the server has recorded `expected` final states (they
    arrive as events, a moment after the run)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flt)
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= expected or time.monotonic() > deadline:
                return runs
            time.sleep(0.5)


def _artifact(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=flt)


def test_a_daily_run_records_one_task_per_stage_and_its_artifact(
    prefect_harness, httpserver, online_env
):
    from flows.daily import daily_digest

    requested = serve_days(httpserver)
    state = daily_digest(
        date=TODAY.isoformat(),
        db=str(online_env / "papers.duckdb"),
        outbox=str(online_env / "outbox"),
        return_state=True,
    )
    result = state.result()
    assert result["status"] == "ok", result
    days = sorted(set(requested))
    assert days[-1] == TODAY.isoformat() and len(days) > 1  # today and the days it looks back on

    flow_run_id = state.state_details.flow_run_id
    runs = _task_runs(flow_run_id, expected=len(days) + 4)
    names = sorted(r.task_key.split("-")[0] for r in runs)
    assert names == sorted(
        ["fetch_day"] * len(days) + ["load_pages", "diff_run", "deliver", "publish"]
    )
    assert [r.name for r in runs if not r.state.is_completed()] == []
    assert [r.name for r in runs if r.tags] == []  # no tag, so no concurrency lease per task

    [artifact] = _artifact(flow_run_id)
    assert artifact.key == "daily-digest"
    assert f"| pages | {result['pages']} |" in artifact.data
    assert f"| new | {result['new']} |" in artifact.data
