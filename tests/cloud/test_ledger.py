import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2c2r.cloud import ledger
from p2c2r.errors import LedgerError


@given(price=st.integers(min_value=0, max_value=10**9), fee_bps=st.integers(min_value=0, max_value=10_000))
def test_peer_billing_balances_and_never_invents_money(price, fee_bps):
    posting = ledger.bill_peer_task(ledger.Tariff(fee_bps=fee_bps), task_id="t", gamer_id="g", peer_ids=["p"],
                                    price_micro_usd=price)
    amounts = {e.account: e.amount_micro_usd for e in posting.entries}
    assert sum(amounts.values()) == 0
    assert amounts["gamer:g"] == -price
    assert amounts["coordinator:fees"] == price * fee_bps // 10_000
    assert amounts["peer:p"] >= price - amounts["coordinator:fees"] - 0


def test_default_fee_is_ten_percent_rounded_for_the_peer():
    earned, fee = ledger.Tariff().split(47)
    assert (earned, fee) == (43, 4)


@pytest.mark.parametrize("source, expected", [("cache", 9), ("cloud", 47)])
def test_coordinator_work_is_billed_per_tariff(source, expected):
    posting = ledger.bill_coordinator_task(ledger.Tariff(), task_id="t", gamer_id="g", source=source, price_micro_usd=47)
    assert posting.entries[0].amount_micro_usd == -expected
    assert sum(e.amount_micro_usd for e in posting.entries) == 0


def test_unbalanced_and_float_postings_are_refused():
    with pytest.raises(LedgerError, match="unbalanced"):
        ledger.Posting("k", None, (ledger.Entry("a", 1, ""), ledger.Entry("b", -2, "")))
    with pytest.raises(LedgerError, match="integer"):
        ledger.Posting("k", None, (ledger.Entry("a", 0.5, ""), ledger.Entry("b", -0.5, "")))


def test_escrow_release_and_reversal_balance():
    for posting in (
        ledger.release_escrow(task_id="t", peer_id="p", amount_micro_usd=43),
        ledger.reverse_escrow(task_id="t", peer_id="p", gamer_id="g", amount_micro_usd=43, reason="audit"),
        ledger.credit_gamer(key="c", gamer_id="g", amount_micro_usd=1000),
    ):
        assert sum(e.amount_micro_usd for e in posting.entries) == 0


def test_money_formatting():
    assert ledger.format_usd(65) == "$0.000065"
    assert ledger.format_usd(83_000, places=3) == "$0.083"
    assert ledger.format_usd(-1_234_567) == "-$1.234567"


@given(price=st.integers(min_value=0, max_value=10**6))
def test_a_quorum_pair_shares_the_earnings_exactly(price):
    posting = ledger.bill_peer_task(ledger.Tariff(), task_id="t", gamer_id="g", peer_ids=["a", "b"],
                                    price_micro_usd=price, escrow=True)
    assert sum(e.amount_micro_usd for e in posting.entries) == 0
    earned, _ = ledger.Tariff().split(price)
    assert ledger.earnings_of(posting, "a") + ledger.earnings_of(posting, "b") == earned
    assert abs(ledger.earnings_of(posting, "a") - ledger.earnings_of(posting, "b")) <= 1
    assert {e.account for e in posting.entries} >= {"escrow:peer:a", "escrow:peer:b"}
