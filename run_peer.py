#!/usr/bin/env python3
"""The seed's run_peer.py: a thin wrapper of `p2c2r peer` (see --help)."""

import sys

from p2c2r.cli import main

if __name__ == "__main__":
    sys.exit(main(["peer", *sys.argv[1:]]))
