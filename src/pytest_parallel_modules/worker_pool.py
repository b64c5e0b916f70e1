"""The controller side of execnet: start workers, send them messages, stop them. Runs in the controller.

Every gateway is a ``popen`` gateway with the controller's own interpreter and
``execmodel=main_thread_only``, so the worker's pytest session runs in the
worker's main thread (signals, faulthandler). The channel callback runs in
execnet's receiver thread and does one thing: put the message on the
controller's event queue, which the controller drains on its main thread.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import queue
import signal
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
        except (EOFError, OSError):
            # The pipe closed mid-message: the process died. How it died comes
            # from exit_description(), which says more than execnet's EOFError.
            return "the worker process ended unexpectedly"
        except channel.TimeoutError:
            return "the worker's channel did not close"
        return None

    def exit_description(self, worker_id: str) -> str | None:
        """How a worker's process ended ("exit code 3", "killed by signal SIGSEGV"), once it has."""
        with self._lock:
            channel = self._channels.get(worker_id)
        # execnet keeps the Popen object of a popen gateway on its IO object and has
        # no public accessor for the exit status; without it a crash report could not
        # say "killed by SIGKILL" (likely out of memory) or "exit code 3".
        popen = getattr(getattr(getattr(channel, "gateway", None), "_io", None), "popen", None)
        if popen is None:
            return None
        try:
            returncode = popen.wait(timeout=2.0)
        except Exception:  # still running, or not a subprocess.Popen after all
            return None
        return describe_returncode(returncode)

    def terminate(self, timeout: float) -> None:
        """Stop every worker: ask politely, then kill what is still running after ``timeout`` s."""
        self._group.terminate(timeout=timeout)


def describe_returncode(returncode: int | None) -> str | None:
    """PURE: ``-11`` -> ``"killed by signal SIGSEGV"``, ``3`` -> ``"exit code 3"``."""
    if returncode is None:
        return None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by signal {name}"
    return f"exit code {returncode}"


def kill_process_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group a worker leads (the worker and what its tests started)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (or the group was never ours)


class _ClosedMarker:
    """The endmarker execnet hands the channel callback when the channel closes."""


_CLOSED: Final = _ClosedMarker()
