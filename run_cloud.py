#!/usr/bin/env python3
"""The seed's run_cloud.py: a thin wrapper of `p2c2r cloud` (see --help)."""

import sys

from p2c2r.cli import main

if __name__ == "__main__":
    sys.exit(main(["cloud", *sys.argv[1:]]))
