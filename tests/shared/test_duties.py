"""Cluster duties on the real database: however many nodes offer, one does the chore an interval."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.store.clock import now_of
from shared.store.duties import offer_duties, take_duty
from shared.store.engine import Store
from worker.node import Node


def test_a_duty_is_done_once_an_interval_and_never_while_another_node_holds_it(
    session: Session, store: Store
) -> None:
    offer_duties(session, "chore")
    offer_duties(session, "chore")  # a second node registering
    session.commit()
    assert take_duty(session, "chore", every=60)  # never done: due
    with store.session_scope() as other:
        # Held by the first node's open transaction (PostgreSQL skips the locked row; SQLite's
        # reader sees it not done yet, and its write would wait: not tried here).
        if other.get_bind().dialect.name == "postgresql":
            assert not take_duty(other, "chore", every=0)
    session.commit()
    with store.session_scope() as other:
        assert not take_duty(other, "chore", every=60)  # done a moment ago
        assert take_duty(other, "chore", every=0)
    session.rollback()


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
