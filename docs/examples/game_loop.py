"""A frame loop that offloads work without ever waiting on the network (ThreadedGamer).

    python docs/examples/game_loop.py ws://127.0.0.1:8765
"""

import random
import sys
import time

from p2c2r.gamer.threaded import ThreadedGamer
from p2c2r.tasks import get_kind

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765"
gamer = ThreadedGamer(url, name="loop_example")
gamer.start()
rng = random.Random(2)
applied = 0
try:
    for frame in range(300):  # five seconds at 60 fps
        start = time.perf_counter()
        if frame % 10 == 0:
            gamer.submit("physics", get_kind("physics").example(rng, "small"), deadline_ms=150, tag=frame)
        for done in gamer.poll():  # never blocks
            applied += done.ok
        time.sleep(max(0.0, 1 / 60 - (time.perf_counter() - start)))
    print(f"applied {applied} physics results, {gamer.in_flight} still in flight")
finally:
    gamer.close()
