#!/usr/bin/env python3
"""The seed's test_network.py: a thin wrapper of `p2c2r test-network` (see --help).

    python3 test_network.py --cloud-ip HOST [--cloud-port 8765]   check a running network from this device
    python3 test_network.py --simulate [--short]                   three hosts here, the failover drill
"""

import sys

from p2c2r.cli import main

if __name__ == "__main__":
    sys.exit(main(["test-network", *sys.argv[1:]]))
