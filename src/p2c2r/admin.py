"""``p2c2r admin``: the operator's commands, run on the coordinator's database file (``--db``).

    p2c2r admin --db results.db add peer_0123456789abcdef [--label "Ann's laptop"]
    p2c2r admin --db results.db add <64 hex digits of a public key>
    p2c2r admin --db results.db remove ENTRY
    p2c2r admin --db results.db list
    p2c2r admin --db results.db credit gamer_0123456789abcdef 5.00
    p2c2r admin --db results.db ban peer_0123456789abcdef [--reason TEXT]
    p2c2r admin --db results.db unban peer_0123456789abcdef
    p2c2r admin --db results.db token

They work whether or not the coordinator is running (SQLite in WAL mode lets both write). Allow-list and
ban changes apply from the client's next connection; credit is seen by a running coordinator the next time
the gamer's balance looks too thin (``cloud/admission.py``). Whoever can write the database file is the
operator: protect it like the key it is (the admin token is kept in it too).

The coordinator's own security flags (``--closed``, ``--free-allowance`` and the limits) are declared
here too (``add_cloud_arguments``), so that ``cli.py`` stays a table of commands.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sqlite3
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from p2c2r.cloud import ledger
from p2c2r.cloud.store import SCHEMA
from p2c2r.network_config import (
    DEFAULT_DB_PATH,
    FETCH_BURST,
    FETCH_RATE_PER_S,
    FREE_ALLOWANCE_MICRO_USD,
    HANDSHAKE_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    MAX_BACKLOG_BYTES,
    MAX_CONNECTIONS_PER_ADDRESS,
    MAX_IN_FLIGHT_PER_GAMER,
    MAX_MESSAGE_BYTES,
    MAX_QUEUED_TASKS,
    MICRO_USD_PER_USD,
    SUBMIT_BURST,
    SUBMIT_RATE_PER_S,
)

CLIENT_ID = re.compile(r"^(peer|gamer)_[0-9a-f]{16}$")
PUBLIC_KEY_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_CREDIT_USD = Decimal(1_000_000)


class AdminError(Exception):
    pass


# The coordinator's flags ------------------------------------------------------------------------------


def add_cloud_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("access and limits")
    group.add_argument("--closed", action="store_true",
                       help="only keys on the allow-list may join (manage it with 'p2c2r admin add|remove|list')")
    group.add_argument("--free-allowance", type=_usd, default=None, metavar="USD",
                       help=f"credit for each new gamer, once, in open mode (default "
                            f"{FREE_ALLOWANCE_MICRO_USD / MICRO_USD_PER_USD:.2f}; 0 = none)")
    group.add_argument("--handshake-timeout", type=float, default=None, metavar="S",
                       help=f"seconds a new connection has to send its hello (default {HANDSHAKE_TIMEOUT_S:g})")
    group.add_argument("--idle-timeout", type=float, default=None, metavar="S",
                       help=f"close connections silent this long (default {IDLE_TIMEOUT_S:g}; 0 = never)")
    group.add_argument("--max-message-bytes", type=int, default=None, metavar="N",
                       help=f"largest message accepted (default {MAX_MESSAGE_BYTES})")
    group.add_argument("--max-queued", type=int, default=None, metavar="N",
                       help=f"tasks waiting for a peer before new ones are refused (default {MAX_QUEUED_TASKS})")
    group.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                       help=f"unanswered tasks per gamer (default {MAX_IN_FLIGHT_PER_GAMER})")
    group.add_argument("--submit-rate", type=float, default=None, metavar="N",
                       help=f"submits a second per gamer (default {SUBMIT_RATE_PER_S:g})")
    group.add_argument("--submit-burst", type=int, default=None, metavar="N",
                       help=f"submits per gamer in one burst (default {SUBMIT_BURST})")
    group.add_argument("--fetch-rate", type=float, default=None, metavar="N",
                       help=f"fetches a second per gamer (default {FETCH_RATE_PER_S:g})")
    group.add_argument("--fetch-burst", type=int, default=None, metavar="N",
                       help=f"fetches per gamer in one burst (default {FETCH_BURST})")
    group.add_argument("--max-connections-per-address", type=int, default=None, metavar="N",
                       help=f"open connections from one IP address (default {MAX_CONNECTIONS_PER_ADDRESS})")
    group.add_argument("--max-backlog-bytes", type=int, default=None, metavar="N",
                       help=f"bytes of messages held for a connection that does not read them before it is "
                            f"closed (default {MAX_BACKLOG_BYTES}; 0 = no limit)")


def apply_cloud_arguments(args: argparse.Namespace, settings: Any) -> None:
    """Copy the flags given onto a ``ServerSettings``; the ones left out keep their defaults."""
    settings.closed = bool(args.closed)
    pairs = [
        ("free_allowance", "free_allowance_micro_usd"),
        ("handshake_timeout", "handshake_timeout_s"),
        ("max_message_bytes", "max_message_bytes"),
        ("max_queued", "max_queued"),
        ("max_in_flight", "max_in_flight_per_gamer"),
        ("submit_rate", "submit_rate_per_s"),
        ("submit_burst", "submit_burst"),
        ("fetch_rate", "fetch_rate_per_s"),
        ("fetch_burst", "fetch_burst"),
        ("max_connections_per_address", "max_connections_per_address"),
    ]
    for flag, field in pairs:
        value = getattr(args, flag)
        if value is not None:
            setattr(settings, field, value)
    if args.idle_timeout is not None:
        settings.idle_timeout_s = args.idle_timeout or None
    if args.max_backlog_bytes is not None:
        settings.max_backlog_bytes = args.max_backlog_bytes or None


def _usd(text: str) -> int:
    try:
        return usd_to_micro(text, allow_zero=True)
    except AdminError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def usd_to_micro(text: str, *, allow_zero: bool = False) -> int:
    try:
        amount = Decimal(text.strip().lstrip("$"))
    except InvalidOperation as exc:
        raise AdminError(f"{text!r} is not an amount in US dollars (e.g. 5 or 0.25)") from exc
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_CREDIT_USD:
        raise AdminError(f"{text!r}: the amount must be more than 0 and at most {MAX_CREDIT_USD} USD")
    micro = amount * MICRO_USD_PER_USD
    if micro != micro.to_integral_value():
        raise AdminError(f"{text!r}: amounts go to the micro-dollar (6 decimal places) at most")
    return int(micro)


# The admin command ------------------------------------------------------------------------------------


def add_admin_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="allow-list, credit and bans, on the coordinator's database")
    admin.add_argument("--db", default=DEFAULT_DB_PATH, help=f"the coordinator's database (default {DEFAULT_DB_PATH})")
    actions = admin.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="allow a client id (peer_..., gamer_...) or a public key (hex) to join")
    add.add_argument("entry")
    add.add_argument("--label", default="", help="a note for the list (whose key it is)")
    remove = actions.add_parser("remove", help="take an entry off the allow-list")
    remove.add_argument("entry")
    actions.add_parser("list", help="the allow-list and the banned peers")
    credit = actions.add_parser("credit", help="add prepaid credit to a gamer's balance")
    credit.add_argument("gamer_id")
    credit.add_argument("amount_usd")
    credit.add_argument("--memo", default="credit by the operator")
    ban = actions.add_parser("ban", help="refuse a peer from its next connection")
    ban.add_argument("peer_id")
    ban.add_argument("--reason", default="banned by the operator")
    unban = actions.add_parser("unban", help="let a banned peer join again")
    unban.add_argument("peer_id")
    actions.add_parser("token", help="print the admin token (for /api/stats and the dashboard)")


def run_admin(args: argparse.Namespace) -> int:
    try:
        for line in admin_command(args.db, args.action, vars(args)):
            print(line)
    except AdminError as exc:
        print(f"❌ {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"❌ database {args.db}: {exc}", file=sys.stderr)
        return 1
    return 0


def admin_command(db: str, action: str, options: dict[str, Any]) -> list[str]:
    """Run one admin action; returns the lines to print. Raises ``AdminError`` with a readable message."""
    if action in ("list", "remove", "unban", "token") and not Path(db).exists():
        raise AdminError(f"no database at {db}: pass the coordinator's --db")
    conn = sqlite3.connect(db, isolation_level=None, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        return _ACTIONS[action](conn, options)
    finally:
        conn.close()


def _entry(text: str) -> str:
    text = text.strip()
    if CLIENT_ID.match(text):
        return text
    if PUBLIC_KEY_HEX.match(text):
        return text.lower()
    raise AdminError(f"{text!r} is neither a client id (peer_ or gamer_ and 16 hex digits) nor a public key "
                     "(64 hex digits); a client prints its id when it connects")


def _add(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    entry = _entry(o["entry"])
    conn.execute("INSERT INTO allowlist (entry, label, added_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(entry) DO UPDATE SET label = excluded.label", (entry, o.get("label") or "", time.time()))
    return [f"✅ {entry} may join (from its next connection) when the coordinator runs with --closed"]


def _remove(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    entry = _entry(o["entry"])
    if conn.execute("DELETE FROM allowlist WHERE entry = ?", (entry,)).rowcount == 0:
        raise AdminError(f"{entry} is not on the allow-list")
    return [f"✅ {entry} removed from the allow-list (connections already open stay until they close)"]


def _list(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    rows = conn.execute("SELECT entry, label, added_at FROM allowlist ORDER BY added_at").fetchall()
    lines = [f"Allow-list ({len(rows)} entr{'y' if len(rows) == 1 else 'ies'}; used with --closed):"]
    for entry, label, added_at in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(added_at))
        lines.append(f"  {entry}  {stamp}  {label}".rstrip())
    banned = conn.execute("SELECT id, name, COALESCE(ban_reason, '') FROM peers WHERE banned = 1 ORDER BY id").fetchall()
    lines.append(f"Banned peers ({len(banned)}):")
    lines.extend(f"  {peer_id}  {name}  {reason}".rstrip() for peer_id, name, reason in banned)
    return lines


def _credit(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    gamer_id = o["gamer_id"].strip()
    if not CLIENT_ID.match(gamer_id) or not gamer_id.startswith("gamer_"):
        raise AdminError(f"{gamer_id!r} is not a gamer id (gamer_ and 16 hex digits; the gamer's client prints it)")
    amount = usd_to_micro(o["amount_usd"])
    posting = ledger.credit_gamer(key=f"credit:{gamer_id}:{time.time_ns()}:{secrets.token_hex(4)}",
                                  gamer_id=gamer_id, amount_micro_usd=amount, memo=str(o.get("memo") or "credit")[:200])
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO ledger (posting_key, task_id, account, amount_micro_usd, memo, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(posting.key, None, e.account, e.amount_micro_usd, e.memo, now) for e in posting.entries])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    account = ledger.gamer_account(gamer_id)
    balance = conn.execute("SELECT COALESCE(SUM(amount_micro_usd), 0) FROM ledger WHERE account = ?", (account,)).fetchone()[0]
    known = conn.execute("SELECT 1 FROM gamers WHERE id = ?", (gamer_id,)).fetchone() is not None
    lines = [f"✅ Credited {ledger.format_usd(amount)} to {gamer_id}; balance {ledger.format_usd(int(balance))}"]
    if not known:
        lines.append(f"   (no gamer {gamer_id} has connected yet: the credit waits for its first connection)")
    return lines


def _peer_id(text: str) -> str:
    text = text.strip()
    if not CLIENT_ID.match(text) or not text.startswith("peer_"):
        raise AdminError(f"{text!r} is not a peer id (peer_ and 16 hex digits; the peer prints it when it connects)")
    return text


def _ban(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    peer_id = _peer_id(o["peer_id"])
    now = time.time()
    conn.execute("INSERT INTO peers (id, name, first_seen, last_seen, banned, ban_reason) VALUES (?, '?', ?, ?, 1, ?) "
                 "ON CONFLICT(id) DO UPDATE SET banned = 1, ban_reason = excluded.ban_reason",
                 (peer_id, now, now, str(o.get("reason") or "banned by the operator")[:2000]))
    return [f"✅ {peer_id} is banned from its next connection"]


def _unban(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    peer_id = _peer_id(o["peer_id"])
    if conn.execute("UPDATE peers SET banned = 0, ban_reason = NULL WHERE id = ? AND banned = 1", (peer_id,)).rowcount == 0:
        raise AdminError(f"{peer_id} is not banned")
    return [f"✅ {peer_id} may join again (a running coordinator lets it in on its next connection)"]


def _token(conn: sqlite3.Connection, o: dict[str, Any]) -> list[str]:
    row = conn.execute("SELECT value FROM meta WHERE key = 'admin_token'").fetchone()
    if row is None:
        raise AdminError("no admin token yet: it is made when the coordinator first starts on this database")
    return [row[0]]


_ACTIONS = {"add": _add, "remove": _remove, "list": _list, "credit": _credit, "ban": _ban, "unban": _unban,
            "token": _token}
