"""Shared fixtures: real coordinator and peer processes on ephemeral 127.0.0.1 ports."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.procs import CloudProcess, PeerProcess, ProcessSet

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# Identity keys made by in-process clients go to a throwaway folder, never to the user's ~/.config/p2c2r.
if "P2C2R_KEY_DIR" not in os.environ:
    os.environ["P2C2R_KEY_DIR"] = tempfile.mkdtemp(prefix="p2c2r-test-keys-")
    atexit.register(shutil.rmtree, os.environ["P2C2R_KEY_DIR"], True)
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

# Property tests draw the same examples on every run, so that CI's verdict depends on the code alone. To
# hunt for new counterexamples, run with HYPOTHESIS_PROFILE=explore (fresh random examples, more of them).
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture
def procs(tmp_path) -> Iterator[ProcessSet]:
    """Starts processes for one test and stops every one of them afterwards, whatever happened."""
    ps = ProcessSet(tmp_path)
    try:
        yield ps
    finally:
        ps.stop_all()


@pytest.fixture(scope="module")
def shared_network(tmp_path_factory) -> Iterator[tuple[CloudProcess, list[PeerProcess]]]:
    """One coordinator and two peers shared by the tests of a module that do not disturb them."""
    ps = ProcessSet(tmp_path_factory.mktemp("net"))
    try:
        cloud = ps.cloud()
        peers = [ps.peer(cloud, name=f"peer_shared_{i}", slots=1) for i in (1, 2)]
        cloud.wait_for_peers(2)
        yield cloud, peers
    finally:
        ps.stop_all()
