"""A worker node's main process: its row in the registry, and the sweeps that keep every run alive.

Every node offers to sweep, every heartbeat interval, so a run never depends on one process (or
on the broker) to be taken up again:
- runs this node holds whose pool process died are taken back at once (a killed child): each
  node, every interval, as part of its own heartbeat;
- runs whose lease ran out are taken back, wherever they ran (a lost or frozen host);
- queued runs whose message the broker no longer has get a new one (a broker that restarted
  empty), at most one copy per missing message.
The last two are cluster duties (`shared.store.duties`): one node a interval does each, whatever
the number of nodes. Taking back a run requeues it with a new message while attempts remain,
else fails it with the reason. Every change is a conditional update, so two sweeps never act
twice. Every time compared is the database's (`shared.store.clock`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kombu import Connection
from kombu.exceptions import ChannelError

from shared.config import Settings
from shared.ops.celery_config import celery_config
from shared.store.duties import hold_duty, offer_duties, take_turn
from shared.store.engine import Store
from shared.store.search import open_searches, sweep_search
from shared.store.sweeps import expired, held_by, lock_briefly, request_handover, take_back, unsent
from shared.store.workers import Beat, heartbeat, register_worker, stop_worker
from worker.process import Send

logger = logging.getLogger(__name__)

# A queued run counts as missing its message only once it was sent this long ago: a message on
# its way to a worker is in neither the broker's count nor the running runs.
RESEND_GRACE = 15.0
# Seconds between two looks at the broker's queue (one connection each), for the whole cluster.
BROKER_LOOK_EVERY = 10.0
# The duty of taking back the runs whose lease ran out, wherever they ran.
EXPIRED_LEASES = "expired-leases"


def broker_look(queue: str) -> str:
    """The duty of looking for the lost messages of `queue`."""
    return f"broker-look:{queue}"


def is_child(pid: int | None) -> bool:
    """Whether `pid` is a live (not zombie) child of this process."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state != "Z" and int(ppid) == os.getpid()


def broker_depth(settings: Settings, queue: str) -> int | None:
    """Messages waiting in the broker's queue; 0 when the queue is gone, None when unknown."""
    options = celery_config(settings)["broker_transport_options"]
    try:
        with Connection(settings.broker_url, transport_options=options) as connection:
            try:
                declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError:
                return 0  # the broker lost the queue with its messages
            return int(declared.message_count)
    except Exception as exc:
        logger.warning("cannot count the messages in queue %s: %s", queue, exc)
        return None


@dataclass
class Node:
    """One worker node (a Celery worker's main process): registered, heartbeating, sweeping."""

    name: str
    settings: Settings
    store: Store
    send: Send
    # Whether a run's pool process is alive (a simulation's threads answer otherwise).
    child_alive: Callable[[int | None], bool] = field(default_factory=lambda: is_child)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # Cluster duties this node did (the bench counts them).
    duties_done: int = 0

    def start(self) -> None:
        """Register the node and start the heartbeat-and-sweep thread."""
        self.register()
        self._thread = threading.Thread(target=self._loop, name="node", daemon=True)
        self._thread.start()
        logger.info(
            "worker %s registered (concurrency %d)", self.name, self.settings.jobs_at_once()
        )

    def register(self) -> None:
        """Insert or refresh the node's row, and offer the cluster duties."""
        with self.store.session_scope() as session:
            register_worker(
                session, self.name, socket.gethostname(), os.getpid(), self.settings.jobs_at_once()
            )
            offer_duties(session, *self._duties())

    def _duties(self) -> dict[str, float]:
        """The cluster duties a node offers to do, each with its interval."""
        return {
            EXPIRED_LEASES: self.settings.heartbeat_interval,
            broker_look(self.settings.queue): BROKER_LOOK_EVERY,
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            try:
                self.sweep(beat=self.beat())
            except Exception:
                logger.exception("worker %s: heartbeat or sweep failed; retrying", self.name)

    def beat(self) -> Beat:
        """Refresh the node's heartbeat (registering again if its row is gone) and read back
        what the sweep needs to know: the runs the node holds and the duties due."""
        with self.store.autocommit() as connection:
            look = heartbeat(connection, self.name, self._duties())
        if not look.registered:
            self.register()
        return look

    def sweep(self, look_at_broker: bool = True, beat: Beat | None = None) -> list[int]:
        """Take back runs whose holder is gone and resend lost messages; return the runs sent.

        The runs of this node's dead pool processes every time; the cluster's expired leases and
        lost messages when the duty is due and no other node is doing it. Given the interval's
        `beat`, nothing more is read when it shows nothing to do: a live holder for every run
        the node holds and no duty due (the usual interval of 200 nodes but one).
        """
        queue, settings = self.settings.queue, self.settings
        dead, sweep, look = True, True, look_at_broker
        if beat is not None:
            dead = any(not self.child_alive(pid) for pid in beat.holding.values())
            sweep = EXPIRED_LEASES in beat.due
            look = look and broker_look(queue) in beat.due
        sweep = sweep and self._take_turn(EXPIRED_LEASES, settings.heartbeat_interval)
        look = look and self._take_turn(broker_look(queue), BROKER_LOOK_EVERY)
        if not (dead or sweep or look):
            return []
        requeued: list[tuple[int, str]] = []
        with self.store.session_scope() as session:
            lock_briefly(session)
            for run in held_by(session, self.name):
                if not self.child_alive(run.worker_pid):
                    reason = f"its pool process {run.worker_pid} died"
                    if take_back(session, run, reason, settings.max_attempts, False):
                        requeued.append((run.id, run.queue))
            swept = sweep and hold_duty(session, EXPIRED_LEASES)
            if swept:
                self.duties_done += 1
                for run in expired(session):
                    reason = (
                        f"its lease expired (no heartbeat for {settings.heartbeat_timeout:g} s)"
                    )
                    if take_back(session, run, reason, settings.max_attempts):
                        requeued.append((run.id, run.queue))
        if swept:  # the searches' slots and test readings, once an interval for the cluster too
            requeued += self._sweep_searches()
        if look:
            with self.store.session_scope() as session:
                if hold_duty(session, broker_look(queue)):
                    self.duties_done += 1
                    depth = broker_depth(settings, queue)
                    missing = [] if depth is None else unsent(session, queue, depth, RESEND_GRACE)
                    if missing:
                        logger.warning(
                            "the broker lost the messages of runs %s; sending again", missing
                        )
                    requeued += [(run_id, queue) for run_id in missing]
        for run_id, run_queue in requeued:
            self.send(run_id, run_queue)
        return [run_id for run_id, _ in requeued]

    def _take_turn(self, duty: str, every: float) -> bool:
        with self.store.autocommit() as connection:
            return take_turn(connection, duty, every)

    def _sweep_searches(self) -> list[tuple[int, str]]:
        """Fill a search's free slots (a trial lost with its worker frees one without a word), and
        send the chosen best's test reading to a worker when nobody has taken it on."""
        send: list[tuple[int, str]] = []
        with self.store.session_scope() as session:
            searches = open_searches(session)
        for study_id in searches:
            with self.store.session_scope() as session:
                lock_briefly(session)
                decision = sweep_search(session, study_id)
            send += decision.send
            if decision.test_run is not None:
                send.append((decision.test_run, self.settings.queue))
        return send

    def hand_over(self) -> None:
        """Take no new run, and ask this node's running jobs to stop at their next batch and go
        back to the queue."""
        with self.store.session_scope() as session:
            stop_worker(session, self.name)  # from now on its pool claims nothing (`leaving`)
            count = request_handover(session, self.name)
        if count:
            logger.info(
                "worker %s is stopping: handing %d run(s) back to the queue", self.name, count
            )

    def stop(self) -> None:
        """Stop the heartbeat and mark the node stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            with self.store.session_scope() as session:
                stop_worker(session, self.name)
        except Exception:
            logger.exception("could not mark worker %s stopped", self.name)
