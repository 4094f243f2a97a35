#!/usr/bin/env python3
"""The seed's run_gamer.py: a thin wrapper of `p2c2r gamer` (see --help)."""

import sys

from p2c2r.cli import main

if __name__ == "__main__":
    sys.exit(main(["gamer", *sys.argv[1:]]))
