"""Every cheat mode yields output that verify rejects or that disagrees with the honest answer, so the
coordinator's checks (verify, quorum, audits) can always catch it."""

import random
import zlib

import msgspec
import pytest

from p2c2r.cloud.validation import check_output, outputs_agree
from p2c2r.peer.cheats import MODES, Cheater
from p2c2r.tasks import registry


@pytest.mark.parametrize("kind_name", sorted(registry()))
@pytest.mark.parametrize("mode", MODES)
def test_cheats_never_pass_for_honest_work(kind_name, mode):
    kind = registry()[kind_name]
    rng = random.Random(zlib.crc32(f"{kind_name}/{mode}".encode()))  # (hash() of a str differs per run)
    cheater = Cheater(mode, seed=1)
    caught_by_verify = 0
    for trial in range(6):
        raw = kind.example(rng, "small")
        honest = msgspec.msgpack.encode(kind.compute(kind.parse_input(raw)))
        tampered = cheater(kind_name, raw, honest)
        if tampered == honest:  # stale's first answer, or nothing to perturb: honest by construction
            continue
        checked = check_output(kind, kind.parse_input(raw), msgspec.msgpack.decode(tampered), random.Random(trial))
        honest_out = kind.parse_output(msgspec.msgpack.decode(honest))
        if checked.verdict.ok:
            assert not outputs_agree(kind, checked.output, honest_out), f"{mode} output agreed with honest"
        else:
            caught_by_verify += 1
    if mode in ("random", "lazy"):
        assert caught_by_verify >= 4, f"verify alone should catch most {mode} outputs"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown cheat mode"):
        Cheater("sneaky")
