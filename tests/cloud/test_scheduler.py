"""The scheduler's decisions, driven by events with a hand-held clock. No sockets, no processes."""

import itertools

import pytest

from p2c2r.cloud.scheduler import CancelAttempt, Dispatch, FailTask, RunFallback, Scheduler


def make(**kw) -> Scheduler:
    counter = itertools.count(1)
    kw.setdefault("peer_queue_per_slot", 0)  # most rules are easier to see with no peer-side queue
    return Scheduler(new_attempt_id=lambda: f"a{next(counter)}", **kw)


def dispatches(decisions):
    return [d for d in decisions if isinstance(d, Dispatch)]


def test_tasks_wait_without_peers_and_go_out_in_order_when_one_joins():
    s = make()
    for i in range(3):
        assert s.submit(f"t{i}", "physics", now=0.0, deadline_at=100.0) == []
    assert s.queue_depth == 3
    out = dispatches(s.add_peer("p1", slots=2, kinds=["physics"], now=1.0))
    assert [d.task_id for d in out] == ["t0", "t1"]
    assert s.queue_depth == 1
    out = dispatches(s.attempt_succeeded(out[0].attempt_id, now=1.1))
    assert [d.task_id for d in out] == ["t2"]


def test_routes_to_the_peer_expected_to_finish_first():
    s = make()
    s.add_peer("slow", slots=4, kinds=["physics"], now=0.0)
    s.add_peer("fast", slots=4, kinds=["physics"], now=0.0)
    # Teach the scheduler each peer's latency.
    for peer, latency in (("slow", 0.080), ("fast", 0.010)):
        d = next(d for d in dispatches(s.submit(f"warm-{peer}", "physics", now=0.0, deadline_at=100.0)))
        if d.peer_id != peer:  # steer: finish on the other first
            s.attempt_succeeded(d.attempt_id, now=latency)
            continue
        s.attempt_succeeded(d.attempt_id, now=latency)
    s.peers["slow"].latency_ms["physics"] = 80.0
    s.peers["fast"].latency_ms["physics"] = 10.0
    picks = [dispatches(s.submit(f"t{i}", "physics", now=1.0, deadline_at=100.0))[0].peer_id for i in range(3)]
    assert picks == ["fast", "fast", "fast"]  # 10 ms x (1 + 2/4) is still below 80 ms


def test_a_peer_only_gets_kinds_it_runs():
    s = make()
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    assert s.submit("t1", "rt_reflections", now=0.0, deadline_at=100.0) == []
    out = dispatches(s.add_peer("p2", slots=1, kinds=["rt_reflections"], now=0.0))
    assert out[0].peer_id == "p2"


TWIN = "ai_npc_dialogue:model=twin-v1"


def test_a_task_that_needs_a_feature_goes_only_to_peers_that_have_it():
    s = make()
    s.add_peer("plain", slots=4, kinds=["ai_npc_dialogue"], now=0.0)
    s.add_peer("holder", slots=4, kinds=["ai_npc_dialogue"], features=[TWIN], now=0.0)
    s.peers["plain"].latency_ms["ai_npc_dialogue"] = 1.0  # the faster one, which would win otherwise
    s.peers["holder"].latency_ms["ai_npc_dialogue"] = 50.0
    picks = [dispatches(s.submit(f"t{i}", "ai_npc_dialogue", now=0.0, deadline_at=100.0, needs=[TWIN]))[0].peer_id
             for i in range(3)]
    assert picks == ["holder"] * 3
    # Tasks without needs still go to the fastest peer, the holder included.
    plain = dispatches(s.submit("free", "ai_npc_dialogue", now=0.0, deadline_at=100.0))[0]
    assert plain.peer_id == "plain"


def test_a_task_no_peer_can_run_waits_without_holding_up_the_queue():
    s = make()
    s.add_peer("plain", slots=1, kinds=["ai_npc_dialogue"], now=0.0)
    first = dispatches(s.submit("busy", "ai_npc_dialogue", now=0.0, deadline_at=100.0))[0]
    assert s.submit("needy", "ai_npc_dialogue", now=0.0, deadline_at=100.0, needs=[TWIN]) == []
    assert s.submit("after", "ai_npc_dialogue", now=0.0, deadline_at=100.0) == []
    # The plain peer's slot frees: the task behind the one it cannot run goes out.
    out = dispatches(s.attempt_succeeded(first.attempt_id, now=0.1))
    assert [(d.task_id, d.peer_id) for d in out] == [("after", "plain")]
    assert s.queue_depth == 1
    # A peer with the feature joins and takes the waiting task.
    out = dispatches(s.add_peer("holder", slots=1, kinds=["ai_npc_dialogue"], features=[TWIN], now=0.2))
    assert [(d.task_id, d.peer_id) for d in out] == [("needy", "holder")]


def test_a_task_that_needs_a_missing_feature_falls_back_at_its_deadline():
    s = make()
    s.add_peer("plain", slots=1, kinds=["ai_npc_dialogue"], now=0.0)
    assert s.submit("needy", "ai_npc_dialogue", now=0.0, deadline_at=1.0, needs=[TWIN]) == []
    decisions = s.tick(now=1.0)
    assert [d.task_id for d in decisions if isinstance(d, RunFallback)] == ["needy"]


def test_lost_peer_work_is_rerouted_never_back_to_it():
    s = make()
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    first = dispatches(s.submit("t1", "physics", now=0.0, deadline_at=100.0))[0]
    assert first.peer_id == "p1"
    assert s.remove_peer("p1", now=0.5) == []  # no one else: queued again
    assert s.queue_depth == 1
    # p1 comes back under the same id: it must not get the task it failed.
    assert dispatches(s.add_peer("p1", slots=1, kinds=["physics"], now=0.6)) == []
    out = dispatches(s.add_peer("p2", slots=1, kinds=["physics"], now=0.7))
    assert out[0].task_id == "t1" and out[0].peer_id == "p2"


def test_rerouted_tasks_go_before_newer_ones():
    s = make()
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    s.submit("old", "physics", now=0.0, deadline_at=100.0)
    s.submit("new", "physics", now=0.1, deadline_at=100.0)
    s.remove_peer("p1", now=0.2)
    out = dispatches(s.add_peer("p2", slots=1, kinds=["physics"], now=0.3))
    assert out[0].task_id == "old"


def test_failures_exhaust_attempts_then_cloud_fallback():
    s = make(max_attempts=2)
    for p in ("p1", "p2", "p3"):
        s.add_peer(p, slots=1, kinds=["physics"], now=0.0)
    d1 = dispatches(s.submit("t1", "physics", now=0.0, deadline_at=100.0))[0]
    d2 = dispatches(s.attempt_failed(d1.attempt_id, now=0.1))[0]
    assert d2.peer_id != d1.peer_id
    out = s.attempt_failed(d2.attempt_id, now=0.2)
    assert RunFallback("t1", "attempts exhausted") in out
    assert "t1" not in s.tasks


def test_failures_not_caused_by_a_peer_do_not_count():
    s = make(max_attempts=1)
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    s.add_peer("p2", slots=1, kinds=["physics"], now=0.0)
    d1 = dispatches(s.submit("t1", "physics", now=0.0, deadline_at=100.0))[0]
    out = s.attempt_failed(d1.attempt_id, now=0.1, blame_peer=False)
    assert not any(isinstance(d, RunFallback) for d in out)
    assert dispatches(out)[0].peer_id != d1.peer_id


def test_deadline_hands_the_task_to_the_coordinator_and_cancels_the_peer():
    s = make()
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    d = dispatches(s.submit("t1", "physics", now=0.0, deadline_at=0.2))[0]
    wake = s.next_wakeup()
    assert wake is not None and 0.0 < wake < 0.2
    assert s.tick(wake - 0.01) == []
    out = s.tick(wake)
    assert RunFallback("t1", "deadline") in out
    assert CancelAttempt(d.attempt_id, "p1", "t1") in out
    assert s.peers["p1"].free_slots == 1


def test_queued_task_without_peers_falls_back_at_its_deadline():
    s = make()
    s.submit("t1", "physics", now=0.0, deadline_at=0.5)
    out = s.tick(0.5)
    assert out == [RunFallback("t1", "deadline")]
    assert s.queue_depth == 0


def test_hedges_a_late_latency_critical_task_on_another_peer():
    s = make()
    s.add_peer("p1", slots=4, kinds=["physics"], now=0.0)
    s.add_peer("p2", slots=4, kinds=["physics"], now=0.0)
    t = 0.0
    for i in range(30):  # 30 samples of ~10 ms
        d = dispatches(s.submit(f"w{i}", "physics", now=t, deadline_at=t + 10))[0]
        s.attempt_succeeded(d.attempt_id, now=t + 0.010)
        t += 0.02
    first = dispatches(s.submit("t1", "physics", now=t, deadline_at=t + 10, latency_critical=True))[0]
    out = s.tick(t + 0.011)
    hedge = dispatches(out)
    assert len(hedge) == 1 and hedge[0].hedge and hedge[0].peer_id != first.peer_id
    # The first valid answer wins; the other copy is cancelled.
    out = s.attempt_succeeded(hedge[0].attempt_id, now=t + 0.015)
    assert CancelAttempt(first.attempt_id, first.peer_id, "t1") in out


def test_full_queue_refuses_with_an_explicit_error():
    s = make(max_queued=2)
    s.submit("t1", "physics", now=0.0, deadline_at=10.0)
    s.submit("t2", "physics", now=0.0, deadline_at=10.0)
    out = s.submit("t3", "physics", now=0.0, deadline_at=10.0)
    assert isinstance(out[0], FailTask) and "queue is full" in out[0].message


def test_duplicate_peer_is_refused():
    s = make()
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    with pytest.raises(ValueError):
        s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)


def test_peers_hold_a_short_queue_and_idle_peers_are_preferred():
    s = make(peer_queue_per_slot=2)
    s.add_peer("p1", slots=1, kinds=["physics"], now=0.0)
    out = [dispatches(s.submit(f"t{i}", "physics", now=0.0, deadline_at=100.0)) for i in range(4)]
    assert [len(d) for d in out] == [1, 1, 1, 0]  # 1 slot + 2 queued, the 4th waits centrally
    assert s.queue_depth == 1
    out = dispatches(s.add_peer("p2", slots=1, kinds=["physics"], now=0.1))
    assert [d.peer_id for d in out] == ["p2"]
    d = dispatches(s.submit("t9", "physics", now=0.2, deadline_at=100.0))
    assert d[0].peer_id == "p2"  # p1 already has 3 tasks ahead, p2 only 1


def test_a_peer_of_quick_tasks_gets_a_deeper_queue_and_one_of_slow_tasks_keeps_the_minimum():
    s = make(peer_queue_per_slot=3, peer_queue_budget_ms=2.0)
    s.add_peer("p", slots=1, kinds=["physics"], now=0.0)
    out = []
    for i in range(100):
        out += dispatches(s.submit(f"t{i}", "physics", now=0.0, deadline_at=100.0))
    assert len(out) == 4  # one running, three queued: the minimum before anything is measured
    # A result that took 0.02 ms of kernel time (0.12 ms with the per-job overhead): 2 ms hold 16 more.
    more = dispatches(s.attempt_succeeded(out[0].attempt_id, now=0.01, compute_ms=0.02))
    assert len(s.peers["p"].running) == 1 + 16 and len(more) == 17 - 3
    # Then slow results (50 ms each): the queue shrinks back to the minimum as they come in.
    running = sorted(s.peers["p"].running)
    for attempt_id in running[:14]:
        s.attempt_succeeded(attempt_id, now=0.02, compute_ms=50.0)
    assert s.peers["p"].capacity == 4
    assert len(s.peers["p"].running) == 4  # refilled only up to the new, smaller capacity


def test_a_peer_over_its_shrunken_capacity_does_not_hide_room_on_another():
    s = make(peer_queue_per_slot=0, peer_queue_budget_ms=2.0)
    s.add_peer("quick", slots=1, kinds=["physics"], now=0.0)
    first = dispatches(s.submit("t0", "physics", now=0.0, deadline_at=100.0))
    for i in range(1, 40):
        s.submit(f"t{i}", "physics", now=0.0, deadline_at=100.0)
    s.attempt_succeeded(first[0].attempt_id, now=0.01, compute_ms=0.02)  # capacity 1 -> 17, all taken
    assert len(s.peers["quick"].running) == 17
    held = sorted(s.peers["quick"].running)
    s.attempt_succeeded(held[0], now=0.02, compute_ms=500.0)  # capacity back to 1, still running 15 more
    assert s.peers["quick"].free_slots < 0
    out = dispatches(s.add_peer("other", slots=2, kinds=["physics"], now=0.03))
    assert [d.peer_id for d in out] == ["other", "other"]
