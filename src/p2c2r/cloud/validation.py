"""Verification policy: which results reach a game, which peers are trusted, who gets banned. Pure.

Defence in depth, after volunteer-computing practice (BOINC's adaptive replication and quorum; rendering
verifiers that re-render random crops), tuned to millisecond deadlines:

1. ``check_output``: every result passes its kind's ``parse_output`` (shape, limits) and ``verify`` (a cheap
   content check with random spot checks) before it is stored, cached, billed or delivered.
2. Quorum: a peer with a short record for a kind has its tasks replicated on a peer of another owner and
   network; the result is accepted when both agree within the kind's tolerance (``agree``). Disagreement
   is settled by the coordinator's own computation, and the wrong side is penalised.
3. Adaptive trust, per (peer, kind): consecutive valid results. Below ``quorum_run`` every task is
   replicated; past it, a task goes unreplicated with a probability that rises with the run
   (``1 - (quorum_run / run)²``). One invalid result resets the run.
4. Audits: the coordinator recomputes a random share of unreplicated accepted results; the share falls as
   the run grows and never goes below ``audit_floor``. The peer's earnings wait in escrow meanwhile.
5. Bans: ``ban_after_invalid`` invalid results (over all kinds) ban the peer; the ban is kept in SQLite
   against its identity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from p2c2r.errors import TaskOutputError
from p2c2r.tasks.base import TaskKind, Verdict


@dataclass(frozen=True, slots=True)
class Checked:
    verdict: Verdict
    output: Any = None  # the typed output, when it parsed and verified
    # The verifier itself failed: a fault of ours, not evidence against the peer.
    internal_error: bool = False


def check_output(kind: TaskKind, inp: Any, raw_output: Any, rng: random.Random) -> Checked:
    try:
        output = kind.parse_output(raw_output)
    except TaskOutputError as exc:
        return Checked(Verdict.reject(f"malformed output: {exc}"))
    except Exception as exc:  # a hostile output must never crash the coordinator
        return Checked(Verdict.reject(f"malformed output: {type(exc).__name__}: {exc}"))
    try:
        verdict = kind.verify(inp, output, rng)
    except Exception as exc:
        return Checked(Verdict.reject(f"the verifier failed: {type(exc).__name__}: {exc}"), internal_error=True)
    return Checked(verdict, output if verdict.ok else None)


def outputs_agree(kind: TaskKind, a: Any, b: Any) -> bool:
    try:
        return bool(kind.agree(a, b))
    except Exception:
        return False


@dataclass(frozen=True, slots=True)
class TrustRecord:
    consecutive_valid: int = 0
    total_valid: int = 0
    total_invalid: int = 0

    def after_valid(self) -> TrustRecord:
        return replace(self, consecutive_valid=self.consecutive_valid + 1, total_valid=self.total_valid + 1)

    def after_invalid(self) -> TrustRecord:
        return replace(self, consecutive_valid=0, total_invalid=self.total_invalid + 1)


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    # Consecutive valid results a peer needs before any of its work goes unreplicated.
    quorum_run: int = 10
    # Audit share right after the quorum run; it then falls as 1/run, down to the floor.
    audit_start: float = 0.1
    audit_floor: float = 0.02
    # Invalid results, over all kinds, that get a peer banned.
    ban_after_invalid: int = 3
    # Replicate at all (off: verify and audits only, e.g. a private network of one's own machines).
    quorum: bool = True

    def replicate(self, record: TrustRecord, rng: random.Random) -> bool:
        if not self.quorum:
            return False
        run = record.consecutive_valid
        if run < self.quorum_run:
            return True
        # Falls with the square of the run: a long honest record soon earns almost all work unreplicated,
        # while a fresh run (e.g. right after an invalid result) is still checked heavily.
        return rng.random() < (self.quorum_run / run) ** 2

    def audit_probability(self, record: TrustRecord) -> float:
        run = max(record.consecutive_valid, self.quorum_run, 1)
        return max(self.audit_floor, min(1.0, self.audit_start * self.quorum_run / run))

    def audit(self, record: TrustRecord, rng: random.Random) -> bool:
        return rng.random() < self.audit_probability(record)

    def trust_score(self, record: TrustRecord) -> float:
        """0..1 for display: how far along the run to unreplicated work the peer is."""
        return min(1.0, record.consecutive_valid / (2 * self.quorum_run))

    def should_ban(self, invalid_over_all_kinds: int) -> bool:
        return invalid_over_all_kinds >= self.ban_after_invalid
