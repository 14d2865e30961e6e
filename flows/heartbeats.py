"""Flow-run heartbeats that stop the moment a flow returns (part of the Prefect edge).

A heartbeat is the event `prefect.flow-run.heartbeat`, sent every
`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds (180 by default) so that a server can tell a run
that died from one still running.
Prefect sends them from a thread that sleeps in 1-s steps, and its engine joins that thread when
the flow returns: every run on a lasting server ended 0-1 s late (0.4-0.8 s measured on the
daily run, the largest single part of its Prefect overhead after Prefect's own import).

Within `own_heartbeats()` (the CLI's Prefect session) Prefect's thread is switched off and each
flow body's `flow_run_heartbeats()` sends the same event, at the same frequency, from a thread
that waits on an event instead, so it ends at once. Elsewhere (a served deployment's run,
tests calling a flow directly) nothing changes: Prefect sends its own, never both.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.context import FlowRunContext
from prefect.events import RelatedResource, emit_event
from prefect.events.related import tags_as_related_resources
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
JOIN_TIMEOUT_S = 2.0  # as Prefect's own: never hang the process on a stuck emit

log = logging.getLogger(__name__)

# The frequency our heartbeats use; None when Prefect sends its own (or none are wanted).
_own_frequency: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "paperdigest_heartbeat_seconds", default=None
)


@contextmanager
def own_heartbeats() -> Iterator[None]:
    """Within the block, flow runs send heartbeats from `flow_run_heartbeats`, not Prefect's thread.

    The configured frequency is kept; with heartbeats switched off (None) nothing changes.
    """
    seconds = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value()
    if seconds is None:
        yield
        return
    token = _own_frequency.set(seconds)
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    finally:
        _own_frequency.reset(token)


@contextmanager
def flow_run_heartbeats() -> Iterator[None]:
    """Send the current flow run's heartbeats until the block ends (under `own_heartbeats`)."""
    seconds = _own_frequency.get()
    context = FlowRunContext.get()
    if seconds is None or context is None or context.flow_run is None:
        yield
        return
    resource, related = _heartbeat_template(context)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                emit_event(event=HEARTBEAT_EVENT, resource=resource, related=related)
            except Exception:  # a lost heartbeat must not fail the run
                log.debug("could not emit a flow-run heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread runs in a copy of this context: the same settings, so the same API URL.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="heartbeats", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=JOIN_TIMEOUT_S)


def _heartbeat_template(context: FlowRunContext) -> tuple[dict[str, str], list[RelatedResource]]:
    """The event's resource and related resources, as Prefect's engine builds them."""
    import prefect

    run = context.flow_run
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run.name or "",
        "prefect.version": prefect.__version__,
    }
    related: list[RelatedResource] = []
    if run.flow_id:
        flow_name = context.flow.name if context.flow else ""
        related.append(_related(f"prefect.flow.{run.flow_id}", "flow", flow_name))
    if run.deployment_id:
        related.append(_related(f"prefect.deployment.{run.deployment_id}", "deployment"))
    related += tags_as_related_resources(set(run.tags or []))
    return resource, related


def _related(resource_id: str, role: str, name: str | None = None) -> RelatedResource:
    fields = {"prefect.resource.id": resource_id, "prefect.resource.role": role}
    return RelatedResource.model_validate(
        fields | ({} if name is None else {"prefect.resource.name": name})
    )
