"""Tasks that need a feature (a model only some peers have installed) go only to peers that advertise it.

In process: a real store and coordinator, recorder sessions for the peers and the gamer. The extra model
is registered for the test (it serves the shipped n-gram model under another id), as a deployment that
ships a larger model would register it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from p2c2r import protocol as p
from p2c2r.cloud.coordinator import Coordinator
from p2c2r.cloud.store import Store
from p2c2r.cloud.validation import ValidationPolicy
from p2c2r.tasks import dialogue, get_kind
from tests.cloud.test_delivery import Recorder
from tests.procs import async_wait_until

KIND = dialogue.NAME
TWIN = "twin-v1"
TWIN_FEATURE = f"{KIND}:model={TWIN}"


@pytest.fixture
async def coordinator(tmp_path, monkeypatch) -> AsyncIterator[Coordinator]:
    models = {**dialogue.MODELS, TWIN: dialogue.ModelBackend(dialogue.load_ngram_backend)}
    monkeypatch.setattr(dialogue, "MODELS", models)
    store = Store(tmp_path / "features.db")
    store.open()
    try:
        yield Coordinator(store, policy=ValidationPolicy(quorum=False, audit_start=0.0, audit_floor=0.0))
    finally:
        store.close()


def _dialogue(model: str, seed: int) -> dict:
    return {"persona": "pilot", "mood": "cheerful", "seed": seed, "model": model}


async def test_a_task_naming_another_model_goes_only_to_the_peer_that_has_it(coordinator):
    gamer = Recorder("gamer_aaa", "ann", "gamer")
    plain = Recorder("peer_plain", "plain", "peer")
    holder = Recorder("peer_holder", "holder", "peer")
    # Advertising a feature of a kind it does not run gives a peer nothing.
    stranger = Recorder("peer_stranger", "stranger", "peer")
    coordinator.gamer_joined(gamer)
    coordinator.peer_joined(plain, slots=4, kinds=[KIND])
    coordinator.peer_joined(stranger, slots=4, kinds=["physics"], features=[TWIN_FEATURE])
    coordinator.peer_joined(holder, slots=4, kinds=[KIND], features=[TWIN_FEATURE, "physics:made-up"])
    assert coordinator.scheduler.peers["peer_holder"].features == frozenset({TWIN_FEATURE})
    for i in range(4):
        coordinator.submit(gamer, p.Submit(f"twin{i}", KIND, _dialogue(TWIN, i), deadline_ms=60_000))
    assigns = await async_wait_until(lambda: len(holder.of(p.Assign)) == 4 and holder.of(p.Assign), 10, "4 Assigns")
    assert plain.of(p.Assign) == [] and stranger.of(p.Assign) == []

    # The holder's answer is verified with the same model and reaches the gamer.
    kind = get_kind(KIND)
    assign = assigns[0]
    output = kind.compute(kind.parse_input(msgspec.msgpack.decode(assign.input)))
    coordinator.peer_result(holder, p.PeerResult(assign.attempt_id, msgspec.to_builtins(output), 1.0))
    result = (await async_wait_until(lambda: gamer.of(p.Result), 10, "the Result"))[0]
    assert result.source == "peer" and msgspec.msgpack.decode(bytes(result.output))["model"] == TWIN

    # Tasks on the shipped model still go to any peer of the kind, the plain one included.
    for i in range(8):
        coordinator.submit(gamer, p.Submit(f"plain{i}", KIND, _dialogue(dialogue.NGRAM_MODEL_ID, i), deadline_ms=60_000))
    await async_wait_until(lambda: plain.of(p.Assign), 10, "an Assign to the plain peer")
