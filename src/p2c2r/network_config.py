"""Shared defaults: the one place for ports, prices, deadlines, fees and timings.

The seed's ``network_config.py`` at the repository root re-exports this module. Money is in integer
micro-dollars (1 USD = 1_000_000); time carries its unit in the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

# Network
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8765
DEFAULT_DB_PATH = "results.db"

# Timeouts
HEARTBEAT_INTERVAL_S = 1.0
# A peer silent for this many intervals is treated as gone and its work re-routed.
HEARTBEAT_MISSES_ALLOWED = 5
HANDSHAKE_TIMEOUT_S = 10.0
RECONNECT_BACKOFF_INITIAL_S = 0.2
RECONNECT_BACKOFF_MAX_S = 10.0

# Limits
# 8 MiB holds the largest legal task (a 1024x1024 grid is 1 MiB) with room to spare; websockets' own
# hard cap is set to twice this so that a message between the two gets an error reply, not a dropped link.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_ATTEMPTS_PER_TASK = 3
MAX_DEADLINE_MS = 10 * 60 * 1000
MAX_QUEUED_TASKS = 100_000
# Per gamer: tasks acknowledged and not yet answered, and Submit messages a second (a token bucket that
# holds SUBMIT_BURST tokens and refills at SUBMIT_RATE_PER_S).
MAX_IN_FLIGHT_PER_GAMER = 1024
SUBMIT_RATE_PER_S = 1000.0
SUBMIT_BURST = 2000
# Fetch messages a second per gamer (a fetch of a finished task is a database read). The burst covers a
# client re-fetching all of its tasks in flight after a few reconnects in quick succession; the client
# retries a refused fetch by itself.
FETCH_RATE_PER_S = 1000.0
FETCH_BURST = 4 * MAX_IN_FLIGHT_PER_GAMER
# Open WebSocket connections from one IP address (an upgrade past it is answered HTTP 429).
MAX_CONNECTIONS_PER_ADDRESS = 64
# Bytes of messages the coordinator holds for one connection that does not read them (its socket's buffers
# full): past it the connection is closed (CLOSE_BACKLOG) rather than the coordinator's memory growing; the
# client reconnects and fetches the results it missed. Eight of the largest messages.
MAX_BACKLOG_BYTES = 8 * MAX_MESSAGE_BYTES
# A connection that sends nothing for this long is closed (CLOSE_IDLE); gamers send a keepalive well
# within it, peers send heartbeats every HEARTBEAT_INTERVAL_S.
IDLE_TIMEOUT_S = 60.0
GAMER_KEEPALIVE_S = 15.0

# Money
MICRO_USD_PER_USD = 1_000_000
COORDINATOR_FEE_BPS = 1_000  # 10.00 % of every peer-computed task, in basis points
# A cache hit costs the gamer this share of the price, all of it to the coordinator (no peer worked).
CACHE_HIT_PRICE_BPS = 2_000
# Cloud fallback is billed at the full price, all of it to the coordinator, which did the work.
CLOUD_FALLBACK_PRICE_BPS = 10_000
# Credit every new gamer gets once, on first join, from a coordinator in open mode ($1). Closed
# coordinators give none: the operator credits gamers with ``p2c2r admin credit``.
FREE_ALLOWANCE_MICRO_USD = 1_000_000

# Results cache
CACHE_TTL_S = 24 * 3600
CACHE_PURGE_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class KindTerms:
    """What a task kind costs and how long a gamer waits for it by default."""

    price_micro_usd: int
    deadline_ms: int


# Prices follow the seed's console ($0.000047 a traced frame, $0.000015 for five paths).
KIND_TERMS = MappingProxyType(
    {
        "rt_reflections": KindTerms(price_micro_usd=47, deadline_ms=250),
        "ai_pathfinding": KindTerms(price_micro_usd=15, deadline_ms=200),
        "physics": KindTerms(price_micro_usd=2, deadline_ms=150),
        "ai_npc_dialogue": KindTerms(price_micro_usd=5, deadline_ms=500),
    }
)
DEFAULT_KIND_TERMS = KindTerms(price_micro_usd=10, deadline_ms=250)


def terms_for(kind: str) -> KindTerms:
    return KIND_TERMS.get(kind, DEFAULT_KIND_TERMS)


# Local GPU cost model behind "Savings vs local GPU" (the seed's Cost Comparison):
# an RTX 4070 at $600 plus $50/month of electricity over 3 years, for 10 hours of play a week.
LOCAL_GPU_UPFRONT_USD = 600.0
LOCAL_GPU_ELECTRICITY_USD_PER_MONTH = 50.0
LOCAL_GPU_LIFETIME_YEARS = 3.0
GAMING_HOURS_PER_WEEK = 10.0
GAME_FPS = 60


def local_gpu_cost_usd_per_hour() -> float:
    total = LOCAL_GPU_UPFRONT_USD + LOCAL_GPU_ELECTRICITY_USD_PER_MONTH * 12 * LOCAL_GPU_LIFETIME_YEARS
    hours = GAMING_HOURS_PER_WEEK * 52 * LOCAL_GPU_LIFETIME_YEARS
    return total / hours
