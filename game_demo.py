#!/usr/bin/env python3
"""The seed's game_demo.py: the P2C2R space shooter, a thin wrapper of `p2c2r game` (see --help).

    python3 game_demo.py --cloud-ip HOST [--cloud-port 8765]
    python3 game_demo.py --local                      # its own coordinator and two peers
    python3 game_demo.py --local --headless --frames 600 --screenshot shot.png --json
"""

import sys

from p2c2r.cli import main

if __name__ == "__main__":
    sys.exit(main(["game", *sys.argv[1:]]))
