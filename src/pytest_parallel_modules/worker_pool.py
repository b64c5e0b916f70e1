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
from typing import TYPE_CHECKING

import execnet

from pytest_parallel_modules import worker
from pytest_parallel_modules.worker import WorkerSetup


if TYPE_CHECKING:
    from collections.abc import Callable


#: Pseudo message put on the event queue when a worker's channel closes.
CHANNEL_CLOSED: Final = "channel_closed"
#: Pseudo message put on the event queue when a worker could not be started.
START_FAILED: Final = "start_failed"
#: Seconds :meth:`WorkerStarter.stop` waits for a start under way.
STOP_TIMEOUT_S: Final = 5.0


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
        # execnet keeps the Popen object of a popen gateway on its IO object and has
        # no public accessor for the exit status; without it a crash report could not
        # say "killed by SIGKILL" (likely out of memory) or "exit code 3".
        popen = self._popen(worker_id)
        if popen is None:
            return None
        try:
            returncode = popen.wait(timeout=2.0)
        except Exception:  # still running, or not a subprocess.Popen after all
            return None
        return describe_returncode(returncode)

    def kill(self, worker_id: str) -> None:
        """Kill a worker's process at once (and its process group, once it made one). Never raises."""
        popen = self._popen(worker_id)
        if popen is None:
            return
        kill_process_group(popen.pid)
        try:
            popen.kill()
        except OSError:
            pass  # already gone

    def _popen(self, worker_id: str) -> Any | None:
        with self._lock:
            channel = self._channels.get(worker_id)
        # See exit_description: execnet has no public accessor for the process.
        return getattr(getattr(getattr(channel, "gateway", None), "_io", None), "popen", None)

    def terminate(self, timeout: float) -> None:
        """Stop every worker: ask politely, then kill what is still running after ``timeout`` s."""
        self._group.terminate(timeout=timeout)


class StartCancelled(Exception):
    """Raised by a start function when the worker was cancelled while it was being placed."""


@final
class WorkerStarter:
    """Places and spawns workers on a thread of its own, one at a time. Runs in the controller.

    Every start -- the first workers, replacements, retry workers -- goes through
    :meth:`request`, so the controller's event loop never waits on git (a snapshot,
    a worktree checkout) or on a process start. ``start`` is called on the starter
    thread with the worker id; whatever it raises becomes a ``START_FAILED`` event,
    as does a request cancelled before it started (with no payload: nothing failed).
    """

    def __init__(self, events: queue.Queue[WorkerEvent], start: Callable[[str], None]) -> None:
        self._events = events
        self._start = start
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self, worker_id: str) -> None:
        """Start ``worker_id`` as soon as the workers asked for before it are started."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="parallel-modules-starter", daemon=True
            )
            self._thread.start()
        self._requests.put(worker_id)

    def cancel(self, worker_id: str) -> None:
        """Do not start ``worker_id`` if it has not started yet."""
        with self._lock:
            self._cancelled.add(worker_id)

    def cancelled(self, worker_id: str) -> bool:
        """Whether ``worker_id`` was cancelled (or every start was, by :meth:`stop`)."""
        with self._lock:
            return self._stopping.is_set() or worker_id in self._cancelled

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Start nothing more; wait at most ``timeout`` s for a start under way to end."""
        self._stopping.set()
        self._requests.put(None)
        if self._thread is not None:
            # A placement may wait on git or on another run's pool lock: never for long.
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            worker_id = self._requests.get()
            if worker_id is None:
                self._cancel_rest()
                return
            if self.cancelled(worker_id):
                self._events.put(WorkerEvent(worker_id, START_FAILED, None))
                continue
            try:
                self._start(worker_id)
            except StartCancelled:
                self._events.put(WorkerEvent(worker_id, START_FAILED, None))
            except Exception as exc:  # git, the pool, a hook or a plugin: the run reports it
                self._events.put(
                    WorkerEvent(worker_id, START_FAILED, {"error": f"{type(exc).__name__}: {exc}"})
                )

    def _cancel_rest(self) -> None:
        while True:
            try:
                worker_id = self._requests.get_nowait()
            except queue.Empty:
                return
            if worker_id is not None:
                self._events.put(WorkerEvent(worker_id, START_FAILED, None))


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
