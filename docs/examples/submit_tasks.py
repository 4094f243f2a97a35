"""Submit one task of each kind to a running coordinator and print what came back.

    python docs/examples/submit_tasks.py ws://127.0.0.1:8765
"""

import asyncio
import random
import sys

from p2c2r.gamer.client import GamerClient
from p2c2r.tasks import registry


async def main(url: str) -> None:
    rng = random.Random(1)
    async with GamerClient(url, name="example") as client:
        futures = {name: client.submit_nowait(name, kind.example(rng, "small")) for name, kind in registry().items()}
        for name, fut in futures.items():
            result = await fut
            print(f"{name:16} {result.source:5} {result.latency_ms:7.1f} ms  {result.cost_micro_usd} micro-USD")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765"))
