"""The controller side of execnet: start workers, send them messages, stop them. Runs in the controller.

Every gateway is a ``popen`` gateway with the controller's own interpreter and
``execmodel=main_thread_only``, so the worker's pytest session runs in the
worker's main thread (signals, faulthandler). The channel callback runs in
execnet's receiver thread and does one thing: put the message on the
controller's event queue, which the controller drains on its main thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import queue
import sys
import threading
from typing import Any
from typing import Final
from typing import final

import execnet

from pytest_parallel_modules import worker
from pytest_parallel_modules.worker import WorkerSetup


#: Pseudo message put on the event queue when a worker's channel closes.
CHANNEL_CLOSED: Final = "channel_closed"
#: Pseudo message put on the event queue when a worker could not be started.
START_FAILED: Final = "start_failed"


@final
@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One message from a worker, as the controller's main thread receives it."""

    worker_id: str
    name: str
    payload: Any


@final
@dataclass(frozen=True, slots=True)
class WorkerLaunch:
    """Where and how to start one worker."""

    #: Working directory of the worker process: the invocation directory, or its
    #: counterpart inside the worker's worktree.
    cwd: Path
    setup: WorkerSetup


def gateway_spec(launch: WorkerLaunch) -> str:
    """Return the execnet spec that starts ``launch`` with this interpreter."""
    return (
        f"popen//python={sys.executable}//chdir={launch.cwd}"
        f"//id={launch.setup['worker_id']}//execmodel=main_thread_only"
    )


@final
class WorkerPool:
    """The running workers of one test run, keyed by worker id."""

    def __init__(self, events: queue.Queue[WorkerEvent]) -> None:
        self._events = events
        self._group = execnet.Group()
        self._channels: dict[str, execnet.Channel] = {}
        # start() may run on a starter thread while the main thread sends.
        self._lock = threading.Lock()

    def start(self, launch: WorkerLaunch) -> None:
        """Start one worker; its messages arrive on the event queue.

        Safe to call from a background thread. A failure to start is reported as
        a ``START_FAILED`` event rather than raised, so the main thread sees every
        outcome in one place.
        """
        worker_id = launch.setup["worker_id"]
        try:
            gateway = self._group.makegateway(gateway_spec(launch))
            channel = gateway.remote_exec(worker)
            channel.send(launch.setup)
        except Exception as exc:  # any failure to spawn is the same event to the controller
            self._events.put(
                WorkerEvent(worker_id, START_FAILED, {"error": f"{type(exc).__name__}: {exc}"})
            )
            return
        with self._lock:
            self._channels[worker_id] = channel

        def on_message(message: Any) -> None:
            # Runs in execnet's receiver thread: enqueue only (see module docstring).
            if message is _CLOSED:
                self._events.put(WorkerEvent(worker_id, CHANNEL_CLOSED, None))
            else:
                name, payload = message
                self._events.put(WorkerEvent(worker_id, name, payload))

        channel.setcallback(on_message, endmarker=_CLOSED)

    def send(self, worker_id: str, name: str, payload: Any = None) -> bool:
        """Send a message to a worker; return False when its channel is already closed."""
        with self._lock:
            channel = self._channels.get(worker_id)
        if channel is None:
            return False
        try:
            channel.send((name, payload))
        except (OSError, EOFError, ValueError):
            # The worker is gone; its CHANNEL_CLOSED event says the rest.
            return False
        return True

    def closing_error(self, worker_id: str) -> str | None:
        """Return why a worker's channel closed, or None when it closed normally.

        Call after its ``CHANNEL_CLOSED`` event.
        """
        with self._lock:
            channel = self._channels.get(worker_id)
        if channel is None:
            return None
        try:
            channel.waitclose(timeout=1.0)
        except channel.RemoteError as exc:
            return str(exc.formatted) if hasattr(exc, "formatted") else str(exc)
        except (EOFError, OSError) as exc:
            return (
                f"{type(exc).__name__}: {exc}"
                if str(exc)
                else "the worker process ended unexpectedly"
            )
        except channel.TimeoutError:
            return "the worker's channel did not close"
        return None

    def terminate(self, timeout: float) -> None:
        """Stop every worker: ask politely, then kill what is still running after ``timeout`` s."""
        self._group.terminate(timeout=timeout)


class _ClosedMarker:
    """The endmarker execnet hands the channel callback when the channel closes."""


_CLOSED: Final = _ClosedMarker()
