"""Cluster duties on the real database: however many nodes offer, one does the chore an interval."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.store.clock import now_of
from shared.store.duties import hold_duty, offer_duties, take_turn
from shared.store.engine import Store
from shared.store.workers import heartbeat, register_worker
from worker.node import Node


def test_a_turn_is_taken_once_an_interval_and_never_while_another_node_holds_the_duty(
    session: Session, store: Store
) -> None:
    offer_duties(session, "chore")
    offer_duties(session, "chore")  # a second node registering
    register_worker(session, "n@test", "host", pid=1, concurrency=1)
    session.commit()

    def turn(every: float) -> bool:
        with store.autocommit() as connection:
            return take_turn(connection, "chore", every)

    assert turn(every=60)  # never done: due
    # Marked done by the turn's own statement: no other node sees it due while the work runs.
    assert not turn(every=60)
    with store.autocommit() as connection:
        assert heartbeat(connection, "n@test", {"chore": 60}).due == frozenset()
    assert hold_duty(session, "chore")  # the turn's work, under the row's lock
    if session.get_bind().dialect.name == "postgresql":
        # Work that outlasts its interval: the next turn is skipped, not queued behind it.
        assert not turn(every=0)
        with store.session_scope() as other:
            assert not hold_duty(other, "chore")
    session.commit()
    assert turn(every=0)
    with store.session_scope() as other:
        assert hold_duty(other, "chore")


def test_twenty_nodes_sweeping_do_the_expired_lease_sweep_once_an_interval(
    settings: Settings, store: Store, session: Session
) -> None:
    interval = 0.5
    quick = settings.with_overrides(heartbeat_interval=interval)
    nodes = [Node(f"n{i}@test", quick, store, lambda run_id, queue: None) for i in range(20)]
    for node in nodes:
        node.register()
    start = now_of(session)
    session.rollback()
    rounds = 6

    def sweep(node: Node) -> None:
        for _ in range(rounds):
            node.sweep(look_at_broker=False, beat=node.beat())
            threading.Event().wait(interval / 2)

    threads = [threading.Thread(target=sweep, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = (now_of(session) - start).total_seconds()
    session.rollback()
    done = sum(node.duties_done for node in nodes)
    # By the database's clock: at most one sweep per interval elapsed (and the first, due at once).
    assert 1 <= done <= elapsed / interval + 1, (done, elapsed)
