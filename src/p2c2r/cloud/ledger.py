"""Prices, fees and double-entry postings. Pure: integers in, ledger rows out.

Accounts are strings: ``gamer:<id>``, ``peer:<id>``, ``escrow:peer:<id>``, ``coordinator:fees``,
``coordinator:compute`` (the coordinator's own work: cache hits, cloud fallback), ``funding`` (where
prepaid credit comes from). Every posting is a list of entries whose amounts sum to zero, so the whole
ledger always sums to zero. Amounts are integer micro-dollars; the fee is rounded down, in the peer's
favour, so that no fraction of a micro-dollar is ever invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p2c2r.errors import LedgerError
from p2c2r.network_config import (
    CACHE_HIT_PRICE_BPS,
    CLOUD_FALLBACK_PRICE_BPS,
    COORDINATOR_FEE_BPS,
    MICRO_USD_PER_USD,
)

FEES_ACCOUNT = "coordinator:fees"
COMPUTE_ACCOUNT = "coordinator:compute"
FUNDING_ACCOUNT = "funding"
FORFEITS_ACCOUNT = "coordinator:forfeits"
BPS = 10_000


def gamer_account(gamer_id: str) -> str:
    return f"gamer:{gamer_id}"


def peer_account(peer_id: str) -> str:
    return f"peer:{peer_id}"


def escrow_account(peer_id: str) -> str:
    return f"escrow:peer:{peer_id}"


@dataclass(frozen=True, slots=True)
class Entry:
    account: str
    amount_micro_usd: int
    memo: str


@dataclass(frozen=True, slots=True)
class Posting:
    """One balanced transaction. ``key`` is unique in the store: a task is billed at most once."""

    key: str
    task_id: str | None
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        total = sum(e.amount_micro_usd for e in self.entries)
        if total != 0:
            raise LedgerError(f"posting {self.key} is unbalanced by {total} micro-USD")
        for entry in self.entries:
            if not isinstance(entry.amount_micro_usd, int):
                raise LedgerError(f"posting {self.key}: amounts are integer micro-USD, got {entry.amount_micro_usd!r}")


@dataclass(frozen=True, slots=True)
class Tariff:
    fee_bps: int = COORDINATOR_FEE_BPS
    cache_hit_bps: int = CACHE_HIT_PRICE_BPS
    fallback_bps: int = CLOUD_FALLBACK_PRICE_BPS

    def split(self, price_micro_usd: int) -> tuple[int, int]:
        """(peer's earnings, coordinator's fee) for a peer-computed task."""
        fee = price_micro_usd * self.fee_bps // BPS
        return price_micro_usd - fee, fee

    def charge_for(self, source: str, price_micro_usd: int) -> int:
        if source == "cache":
            return price_micro_usd * self.cache_hit_bps // BPS
        if source == "cloud":
            return price_micro_usd * self.fallback_bps // BPS
        return price_micro_usd


def bill_peer_task(
    tariff: Tariff,
    *,
    task_id: str,
    gamer_id: str,
    peer_ids: Sequence[str],
    price_micro_usd: int,
    escrow: bool = False,
) -> Posting:
    """The gamer pays the price once; the peers whose results were accepted share the earnings (a quorum
    pair splits them, the remainder micro-dollar going to the first) and the coordinator keeps the fee.
    With ``escrow`` the earnings wait in the peers' escrow accounts until an audit releases them."""
    if not peer_ids:
        raise LedgerError(f"task {task_id}: a peer-billed task needs at least one peer")
    earned, fee = tariff.split(price_micro_usd)
    share, remainder = divmod(earned, len(peer_ids))
    entries = [Entry(gamer_account(gamer_id), -price_micro_usd, "task charge")]
    for i, peer_id in enumerate(peer_ids):
        account = escrow_account(peer_id) if escrow else peer_account(peer_id)
        entries.append(Entry(account, share + (remainder if i == 0 else 0), "task earnings"))
    entries.append(Entry(FEES_ACCOUNT, fee, "coordinator fee"))
    return Posting(key=f"charge:{task_id}", task_id=task_id, entries=tuple(entries))


def earnings_of(posting: Posting, peer_id: str) -> int:
    return sum(e.amount_micro_usd for e in posting.entries
               if e.account in (peer_account(peer_id), escrow_account(peer_id)))


def forfeit(*, key: str, account: str, amount_micro_usd: int, reason: str) -> Posting:
    """A banned peer's unpaid balance goes to the coordinator's forfeits account."""
    return Posting(
        key=key,
        task_id=None,
        entries=(
            Entry(account, -amount_micro_usd, f"forfeited: {reason}"),
            Entry(FORFEITS_ACCOUNT, amount_micro_usd, f"forfeited: {reason}"),
        ),
    )


def bill_coordinator_task(tariff: Tariff, *, task_id: str, gamer_id: str, source: str, price_micro_usd: int) -> Posting:
    """Cache hits and cloud fallback: the coordinator did the work and keeps what the gamer pays."""
    charge = tariff.charge_for(source, price_micro_usd)
    return Posting(
        key=f"charge:{task_id}",
        task_id=task_id,
        entries=(
            Entry(gamer_account(gamer_id), -charge, f"task charge ({source})"),
            Entry(COMPUTE_ACCOUNT, charge, f"coordinator compute ({source})"),
        ),
    )


def release_escrow(*, task_id: str, peer_id: str, amount_micro_usd: int) -> Posting:
    return Posting(
        key=f"release:{task_id}:{peer_id}",
        task_id=task_id,
        entries=(
            Entry(escrow_account(peer_id), -amount_micro_usd, "escrow released"),
            Entry(peer_account(peer_id), amount_micro_usd, "earnings released"),
        ),
    )


def reverse_escrow(*, task_id: str, peer_id: str, gamer_id: str, amount_micro_usd: int, reason: str) -> Posting:
    """An audit failed after acceptance: the peer's held earnings go back to the gamer."""
    return Posting(
        key=f"reverse:{task_id}:{peer_id}",
        task_id=task_id,
        entries=(
            Entry(escrow_account(peer_id), -amount_micro_usd, f"escrow reversed: {reason}"),
            Entry(gamer_account(gamer_id), amount_micro_usd, f"refund: {reason}"),
        ),
    )


def credit_gamer(*, key: str, gamer_id: str, amount_micro_usd: int, memo: str = "credit") -> Posting:
    if amount_micro_usd <= 0:
        raise LedgerError("a credit must be a positive number of micro-USD")
    return Posting(
        key=key,
        task_id=None,
        entries=(
            Entry(FUNDING_ACCOUNT, -amount_micro_usd, memo),
            Entry(gamer_account(gamer_id), amount_micro_usd, memo),
        ),
    )


def usd(micro_usd: int) -> float:
    return micro_usd / MICRO_USD_PER_USD


def format_usd(micro_usd: int, *, places: int = 6) -> str:
    sign = "-" if micro_usd < 0 else ""
    whole, frac = divmod(abs(micro_usd), MICRO_USD_PER_USD)
    text = f"{whole}.{frac:06d}"[: len(str(whole)) + 1 + places]
    return f"{sign}${text}"
