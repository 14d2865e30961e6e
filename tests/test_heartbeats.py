"""Our flow-run heartbeats: the same event as Prefect's, never both, and over when the flow returns.

Events are read back from the test harness's server, as an automation watching for dead runs
would see them.
"""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.prefect


def _events(flow_run_id, wanted: int = 1, timeout_s: float = 30.0) -> list[dict]:
    """The flow run's events on the server, once `wanted` heartbeats or its final state arrived
    (events reach the server a moment after they are sent)."""
    from prefect import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    query = {
        "filter": {"any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}},
        "limit": 50,
    }
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json=query).json()["events"]
            beats = [e for e in events if e["event"] == "prefect.flow-run.heartbeat"]
            done = any(e["event"] == "prefect.flow-run.Completed" for e in events)
            if (done and len(beats) >= wanted) or time.monotonic() > deadline:
                return events
            time.sleep(0.3)


def _heartbeats(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "prefect.flow-run.heartbeat"]


def _shape(event: dict) -> tuple:
    """What identifies a heartbeat: its resource and its related resources (not its id/time)."""
    return event["resource"], sorted(sorted(r.items()) for r in event["related"])


def _beating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "heartbeats"]


def _flow():
    from prefect import flow

    from flows.heartbeats import flow_run_heartbeats

    @flow(name="heartbeat-probe")
    def probe(pause: float = 0.0) -> list[str]:
        with flow_run_heartbeats():
            alive = [t.name for t in _beating_threads()]
            time.sleep(pause)
        return alive

    return probe


def test_ours_replace_prefects_with_the_same_event(prefect_harness) -> None:
    """Under `own_heartbeats` Prefect's thread is off and ours sends the very event Prefect's
    would (same resource, same related resources); outside it Prefect sends its own."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    from flows.heartbeats import own_heartbeats

    probe = _flow()
    prefects = probe(return_state=True)
    with own_heartbeats():
        assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
        ours = probe(return_state=True)
    assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() == 180

    assert prefects.result() == []  # Prefect's own thread has another name
    assert ours.result() == ["heartbeats"]
    theirs = _heartbeats(_events(prefects.state_details.flow_run_id))
    mine = _heartbeats(_events(ours.state_details.flow_run_id))
    assert len(theirs) == 1 and len(mine) == 1  # one each: never both
    flow_run = f"prefect.flow-run.{ours.state_details.flow_run_id}"
    assert mine[0]["resource"]["prefect.resource.id"] == flow_run
    their_resource, their_related = _shape(theirs[0])
    my_resource, my_related = _shape(mine[0])
    assert my_related == their_related  # the same flow, by the same name
    assert my_resource.keys() == their_resource.keys()


def test_our_thread_has_ended_when_the_flow_returns(prefect_harness) -> None:
    """No wait for a sleeping thread: by the time the flow call returns, the thread is gone."""
    from flows.heartbeats import own_heartbeats

    probe = _flow()
    with own_heartbeats():
        assert probe(pause=0.2) == ["heartbeats"]
        assert _beating_threads() == []


def test_they_repeat_at_the_frequency(prefect_harness) -> None:
    """A run longer than the interval sends one heartbeat per interval (0.2 s here; Prefect's
    setting allows no less than 30 s, so the test sets our own frequency directly)."""
    from flows import heartbeats

    probe = _flow()
    token = heartbeats._own_frequency.set(0.2)
    try:
        state = probe(pause=1.0, return_state=True)
    finally:
        heartbeats._own_frequency.reset(token)
    beats = _heartbeats(_events(state.state_details.flow_run_id, wanted=3))
    assert 3 <= len(beats) <= 7  # ~5 in 1 s: bounds wide enough for a loaded machine


def test_with_heartbeats_switched_off_none_are_sent(prefect_harness) -> None:
    """PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset (as on the CLI's temporary server): no thread, no
    event, and Prefect's setting is left as it was."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.heartbeats import own_heartbeats

    probe = _flow()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), own_heartbeats():
        state = probe(return_state=True)
    assert state.result() == []
    assert _heartbeats(_events(state.state_details.flow_run_id, wanted=0)) == []
