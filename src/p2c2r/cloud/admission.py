"""Per-gamer admission of new tasks: submit rate, tasks in flight and the prepaid balance. Pure, no I/O.

The coordinator asks ``admit`` just before it tracks a new task, and the answer (a refusal or None) costs
no SQL: each gamer's wallet lives in memory, loaded from the ledger each time the gamer joins
(``load``). A task reserves its full price while it is in flight (``reserve``/``release``, called when the
coordinator tracks and untracks it), so many concurrent submits cannot overdraw: the check is against the
balance less what is already held. When the task completes, its actual cost (less than the price for a
cache hit) comes off the balance (``charged``).

Credit posted behind the coordinator's back (``p2c2r admin credit`` on the database file) is picked up
the next time the wallet looks too thin: a refusal for funds first re-reads the balance from the ledger
(``balance_of``), at most once per ``RELOAD_INTERVAL_S`` per gamer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p2c2r import protocol as p
from p2c2r.cloud.ledger import format_usd
from p2c2r.network_config import (
    FETCH_BURST,
    FETCH_RATE_PER_S,
    MAX_IN_FLIGHT_PER_GAMER,
    SUBMIT_BURST,
    SUBMIT_RATE_PER_S,
)

RELOAD_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_in_flight: int | None = MAX_IN_FLIGHT_PER_GAMER
    submit_rate_per_s: float | None = SUBMIT_RATE_PER_S
    submit_burst: int = SUBMIT_BURST
    fetch_rate_per_s: float | None = FETCH_RATE_PER_S
    fetch_burst: int = FETCH_BURST
    # False: balances are tracked but never refuse a task (a coordinator embedded in tests or tools).
    enforce_balance: bool = True


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` a second; each admitted event takes one."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else float("inf")


@dataclass(slots=True)
class Wallet:
    balance: int = 0  # micro-USD, as in the ledger (plus what completed since it was loaded)
    reserved: int = 0  # prices of tasks in flight
    in_flight: int = 0
    loaded: bool = False
    reloaded_at: float = float("-inf")
    bucket: TokenBucket | None = field(default=None)
    fetch_bucket: TokenBucket | None = field(default=None)

    @property
    def available(self) -> int:
        return self.balance - self.reserved


class Admission:
    def __init__(
        self,
        limits: AdmissionLimits | None = None,
        *,
        balance_of: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or AdmissionLimits()
        self._balance_of = balance_of
        self._clock = clock
        self.wallets: dict[str, Wallet] = {}
        self.refused: dict[str, int] = {p.E_RATE_LIMITED: 0, p.E_TOO_MANY_IN_FLIGHT: 0, p.E_INSUFFICIENT_FUNDS: 0}

    def _wallet(self, gamer_id: str) -> Wallet:
        wallet = self.wallets.get(gamer_id)
        if wallet is None:
            wallet = self.wallets[gamer_id] = Wallet()
        return wallet

    # Joining ----------------------------------------------------------------------------------------

    def is_loaded(self, gamer_id: str) -> bool:
        wallet = self.wallets.get(gamer_id)
        return wallet is not None and wallet.loaded

    def load(self, gamer_id: str, balance_micro_usd: int) -> None:
        """The gamer's ledger balance, read when it joins; reservations already held are kept."""
        wallet = self._wallet(gamer_id)
        wallet.balance = balance_micro_usd
        wallet.loaded = True

    def balance(self, gamer_id: str) -> int:
        wallet = self.wallets.get(gamer_id)
        return wallet.balance if wallet else 0

    # Tasks ------------------------------------------------------------------------------------------

    def admit(self, gamer_id: str, price_micro_usd: int) -> Refusal | None:
        """None if the gamer may submit a task of this price now; else why not. Reserves nothing."""
        limits = self.limits
        wallet = self._wallet(gamer_id)
        now = self._clock()
        if limits.submit_rate_per_s is not None:
            if wallet.bucket is None:
                wallet.bucket = TokenBucket(limits.submit_rate_per_s, limits.submit_burst, now)
            if not wallet.bucket.take(now):
                return self._rate_limited("submits", wallet.bucket)
        if limits.max_in_flight is not None and wallet.in_flight >= limits.max_in_flight:
            self.refused[p.E_TOO_MANY_IN_FLIGHT] += 1
            return Refusal(p.E_TOO_MANY_IN_FLIGHT,
                           f"{wallet.in_flight} of your tasks are in flight, the most allowed is "
                           f"{limits.max_in_flight}: wait for results before submitting more")
        if limits.enforce_balance and wallet.available < price_micro_usd:
            if self._balance_of is not None and now - wallet.reloaded_at >= RELOAD_INTERVAL_S:
                wallet.reloaded_at = now  # credit may have been posted by the admin command: look again
                wallet.balance = self._balance_of(gamer_id)
                wallet.loaded = True
            if wallet.available < price_micro_usd:
                self.refused[p.E_INSUFFICIENT_FUNDS] += 1
                held = f" ({format_usd(wallet.reserved)} held for tasks in flight)" if wallet.reserved else ""
                return Refusal(p.E_INSUFFICIENT_FUNDS,
                               f"insufficient funds: the task costs up to {format_usd(price_micro_usd)} and your "
                               f"balance is {format_usd(wallet.balance)}{held}; ask the coordinator's operator "
                               f"for credit (p2c2r admin credit {gamer_id} USD)")
        return None

    def admit_fetch(self, gamer_id: str) -> Refusal | None:
        """None if the gamer may fetch a task now (a fetch may cost a database read); else why not."""
        limits = self.limits
        if limits.fetch_rate_per_s is None:
            return None
        wallet = self._wallet(gamer_id)
        now = self._clock()
        if wallet.fetch_bucket is None:
            wallet.fetch_bucket = TokenBucket(limits.fetch_rate_per_s, limits.fetch_burst, now)
        return None if wallet.fetch_bucket.take(now) else self._rate_limited("fetches", wallet.fetch_bucket)

    def _rate_limited(self, what: str, bucket: TokenBucket) -> Refusal:
        self.refused[p.E_RATE_LIMITED] += 1
        return Refusal(p.E_RATE_LIMITED, f"too many {what}: at most {bucket.rate:g} a second (bursts of "
                                         f"{bucket.burst:.0f}); retry in {bucket.wait_s() * 1000:.0f} ms")

    def reserve(self, gamer_id: str, price_micro_usd: int) -> None:
        wallet = self._wallet(gamer_id)
        wallet.in_flight += 1
        wallet.reserved += price_micro_usd

    def answered(self, gamer_id: str) -> None:
        """A task's result reached the gamer: it no longer counts as in flight, while its price stays held
        until it is charged or released (the commit that bills it may still be running)."""
        wallet = self._wallet(gamer_id)
        wallet.in_flight = max(0, wallet.in_flight - 1)

    def release(self, gamer_id: str, price_micro_usd: int, *, answered: bool = False) -> None:
        """A task is over: its price is no longer held, nor (unless ``answered`` said so) its place in flight."""
        wallet = self._wallet(gamer_id)
        if not answered:
            wallet.in_flight = max(0, wallet.in_flight - 1)
        wallet.reserved = max(0, wallet.reserved - price_micro_usd)

    def charged(self, gamer_id: str, cost_micro_usd: int) -> None:
        self._wallet(gamer_id).balance -= cost_micro_usd

    def credited(self, gamer_id: str, amount_micro_usd: int) -> None:
        self._wallet(gamer_id).balance += amount_micro_usd
