"""Per-gamer admission: token bucket, tasks in flight, and a balance that concurrent submits cannot overdraw."""

from __future__ import annotations

from p2c2r import protocol as p
from p2c2r.cloud.admission import Admission, AdmissionLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert 0.4 < bucket.wait_s() <= 0.5
    assert not bucket.take(0.4)
    assert bucket.take(0.5)
    assert bucket.take(10.0) and bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)  # capped at burst


def test_rate_limit_refuses_with_a_retry_hint():
    clock = Clock()
    adm = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=1.0, submit_burst=2, enforce_balance=False),
                    clock=clock)
    assert adm.admit("g", 10) is None and adm.admit("g", 10) is None
    refusal = adm.admit("g", 10)
    assert refusal is not None and refusal.code == p.E_RATE_LIMITED and "retry in" in refusal.message
    assert adm.admit("other", 10) is None  # per gamer
    clock.now += 1.0
    assert adm.admit("g", 10) is None


def test_fetches_have_their_own_rate_limit_apart_from_submits():
    clock = Clock()
    adm = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=1.0, submit_burst=1, fetch_rate_per_s=2.0,
                                    fetch_burst=3, enforce_balance=False), clock=clock)
    assert adm.admit("g", 10) is None and adm.admit("g", 10) is not None  # the submit bucket is empty
    assert [adm.admit_fetch("g") for _ in range(3)] == [None, None, None]  # fetches still may
    refusal = adm.admit_fetch("g")
    assert refusal is not None and refusal.code == p.E_RATE_LIMITED and "fetches" in refusal.message
    assert "retry in 500 ms" in refusal.message
    assert adm.admit_fetch("other") is None  # per gamer
    clock.now += 0.5
    assert adm.admit_fetch("g") is None and adm.admit_fetch("g") is not None
    unlimited = Admission(AdmissionLimits(fetch_rate_per_s=None), clock=clock)
    assert all(unlimited.admit_fetch("g") is None for _ in range(10_000))


def test_in_flight_limit_counts_tracked_tasks():
    adm = Admission(AdmissionLimits(max_in_flight=2, submit_rate_per_s=None, enforce_balance=False))
    for _ in range(2):
        assert adm.admit("g", 1) is None
        adm.reserve("g", 1)
    refusal = adm.admit("g", 1)
    assert refusal is not None and refusal.code == p.E_TOO_MANY_IN_FLIGHT and "2" in refusal.message
    adm.release("g", 1)
    assert adm.admit("g", 1) is None


def test_an_answered_task_leaves_the_in_flight_count_but_keeps_its_price_held_until_released():
    adm = Admission(AdmissionLimits(max_in_flight=1, submit_rate_per_s=None))
    adm.load("g", 20)
    assert adm.admit("g", 15) is None
    adm.reserve("g", 15)
    adm.answered("g")  # the result is out, its billing commit still running
    refusal = adm.admit("g", 15)  # room in flight, but 5 of the 20 are free until the first is charged
    assert refusal is not None and refusal.code == p.E_INSUFFICIENT_FUNDS
    assert adm.admit("g", 5) is None
    adm.release("g", 15, answered=True)
    adm.charged("g", 15)
    assert adm.wallets["g"].in_flight == 0 and adm.wallets["g"].reserved == 0 and adm.balance("g") == 5


def test_reservations_stop_concurrent_submits_from_overdrawing():
    adm = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=None))
    adm.load("g", 100)
    admitted = 0
    for _ in range(20):  # all submitted before any completes
        if adm.admit("g", 15) is None:
            adm.reserve("g", 15)
            admitted += 1
    assert admitted == 6  # 6 * 15 = 90 <= 100 < 105
    refusal = adm.admit("g", 15)
    assert refusal is not None and refusal.code == p.E_INSUFFICIENT_FUNDS
    assert "$0.000015" in refusal.message and "$0.000100" in refusal.message and "admin credit g" in refusal.message
    # Completions charge what was actually billed (a cache hit costs less than its reservation).
    for cost in (15, 3):
        adm.release("g", 15)
        adm.charged("g", cost)
    assert adm.balance("g") == 82 and adm.wallets["g"].reserved == 60
    assert adm.admit("g", 15) is None


def test_a_refusal_for_funds_rereads_the_ledger_at_most_once_a_second():
    clock = Clock()
    ledger_balance = {"g": 0}
    reads = []

    def balance_of(gamer_id: str) -> int:
        reads.append(gamer_id)
        return ledger_balance[gamer_id]

    adm = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=None), balance_of=balance_of, clock=clock)
    adm.load("g", 0)
    assert adm.admit("g", 5) is not None and len(reads) == 1
    ledger_balance["g"] = 1_000  # the operator ran `p2c2r admin credit`
    assert adm.admit("g", 5) is not None and len(reads) == 1  # not again within the second
    clock.now += 1.0
    assert adm.admit("g", 5) is None and len(reads) == 2
    assert adm.admit("g", 5) is None and len(reads) == 2  # enough funds: no SQL at all


def test_unenforced_admission_never_refuses():
    adm = Admission(AdmissionLimits(max_in_flight=None, submit_rate_per_s=None, enforce_balance=False))
    for _ in range(10_000):
        assert adm.admit("g", 1_000_000) is None
        adm.reserve("g", 1_000_000)
