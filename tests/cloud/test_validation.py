"""Trust and quorum rules on their own."""

import random

from p2c2r.cloud.validation import TrustRecord, ValidationPolicy


def test_new_peers_are_always_replicated():
    policy = ValidationPolicy()
    rng = random.Random(0)
    assert all(policy.replicate(TrustRecord(consecutive_valid=n), rng) for n in range(policy.quorum_run))


def test_unreplicated_share_rises_with_the_run():
    policy = ValidationPolicy()
    rng = random.Random(1)

    def share(run: int) -> float:
        return sum(not policy.replicate(TrustRecord(consecutive_valid=run), rng) for _ in range(4000)) / 4000

    shares = [share(run) for run in (10, 20, 50, 200)]
    assert shares[0] == 0.0
    assert shares == sorted(shares) and shares[-1] > 0.9


def test_one_invalid_result_resets_the_run():
    record = TrustRecord()
    for _ in range(25):
        record = record.after_valid()
    assert record.consecutive_valid == 25
    record = record.after_invalid()
    assert (record.consecutive_valid, record.total_valid, record.total_invalid) == (0, 25, 1)
    assert ValidationPolicy().replicate(record, random.Random(0))


def test_audit_share_falls_with_trust_to_a_floor():
    policy = ValidationPolicy(audit_floor=0.02)
    probs = [policy.audit_probability(TrustRecord(consecutive_valid=n)) for n in (0, 10, 40, 100, 10_000)]
    assert probs == sorted(probs, reverse=True)
    assert probs[-1] == 0.02


def test_ban_threshold():
    policy = ValidationPolicy(ban_after_invalid=3)
    assert not policy.should_ban(2) and policy.should_ban(3)


def test_quorum_can_be_switched_off():
    assert not ValidationPolicy(quorum=False).replicate(TrustRecord(), random.Random(0))
