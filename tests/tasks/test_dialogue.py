"""Tests of the ``ai_npc_dialogue`` task kind: generation, the filter, the shipped model, parse and verify."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks import dialogue, get_kind
from p2c2r.tasks.dialogue import (
    CANDIDATES,
    EVENTS,
    FALLBACK_ATTEMPT,
    GENERIC_PERSONA,
    MAX_ATTEMPTS,
    MAX_SEED,
    MOODS,
    PERSONAS,
    SPOT_CHECK_ODDS,
    Output,
    agree,
    compute,
    example,
    parse_input,
    parse_output,
    screen_line,
    verify,
)


def line_for(**fields: Any) -> Output:
    return compute(parse_input({"persona": "commander", "seed": 1, **fields}))


def with_line(out: Output, line: str) -> Output:
    """``out`` carrying another line (and its word count), as a dishonest peer would send it."""
    return msgspec.structs.replace(out, line=line, words=line.count(" ") + 1)


class FixedRng(random.Random):
    """A verifier rng whose ``random()`` always returns ``value``: drives verify's spot check."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


SPOT_CHECK = FixedRng(0.0)
NO_SPOT_CHECK = FixedRng(1.0 - 2**-53)


def rejected(inp: dialogue.Input, out: Output) -> bool:
    """Rejected every time: without the spot check (the part of verify that runs on every output), with it,
    and under a few seeded rngs."""
    rngs = [NO_SPOT_CHECK, SPOT_CHECK, *(random.Random(seed) for seed in range(3))]
    return not any(verify(inp, out, rng) for rng in rngs)


# Generation -----------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_line() -> None:
    first = line_for(seed=42, mood="alarmed", events=["wave_start"], player_words="Where are they?")
    second = line_for(seed=42, mood="alarmed", events=["wave_start"], player_words="Where are they?")
    assert first == second


def test_different_seeds_give_different_lines() -> None:
    lines = {line_for(seed=seed).line for seed in range(8)}
    assert len(lines) >= 6


def test_persona_changes_the_vocabulary() -> None:
    def vocabulary(persona: str) -> set[str]:
        return {
            word.strip(".,!?").lower()
            for seed in range(40)
            for word in line_for(persona=persona, seed=seed).line.split(" ")
        }

    commander, merchant = vocabulary("commander"), vocabulary("merchant")
    assert len(commander & merchant) / len(commander | merchant) < 0.3
    assert {"credits", "customer", "wares", "price", "prices", "shop"} & merchant
    assert not {"credits", "customer", "wares", "shop"} & commander


def test_mood_changes_the_line() -> None:
    calm = {line_for(mood="calm", seed=seed).line for seed in range(20)}
    alarmed = {line_for(mood="alarmed", seed=seed).line for seed in range(20)}
    assert sum(line.endswith("!") for line in alarmed) > sum(line.endswith("!") for line in calm)


def test_an_event_biases_the_topic() -> None:
    def mentions_the_flagship(events: list[str]) -> int:
        outs = [line_for(persona="pilot", mood="alarmed", seed=seed, events=events) for seed in range(30)]
        return sum(any(word in o.line.lower() for word in ("flagship", "overlord", "huge")) for o in outs)

    assert mentions_the_flagship(["boss_appears"]) > mentions_the_flagship([]) + 10


def test_player_words_bias_the_topic() -> None:
    def mentions(player_words: str, word: str) -> int:
        outs = [line_for(persona="merchant", seed=seed, player_words=player_words) for seed in range(30)]
        return sum(word in o.line.lower() for o in outs)

    assert mentions("Got any repair kits? My hull is toast.", "repair") > mentions("", "repair")


@pytest.mark.parametrize("max_words", [1, 2, 3, 5, 8, 40])
def test_the_word_limit_is_respected(max_words: int) -> None:
    for seed in range(25):
        for persona in (*PERSONAS, GENERIC_PERSONA):
            out = line_for(persona=persona, seed=seed, max_words=max_words, mood=MOODS[seed % len(MOODS)])
            assert 1 <= out.words == len(out.line.split(" ")) <= max_words


def test_fallback_is_a_short_corpus_line_that_verifies() -> None:
    backend = dialogue.load_ngram_backend()
    inputs = [
        parse_input({"persona": "enemy_boss", "mood": "angry", "seed": seed, "max_words": 1})
        for seed in range(200)
    ]
    fallbacks = [inp for inp in inputs if dialogue._best_sample(backend, dialogue._resolve(inp)) is None]
    assert fallbacks, "max_words=1 should exhaust the attempts for some seed"
    corpus = dialogue.data_file("corpus.txt").decode()
    for inp in fallbacks[:5]:
        out = compute(inp)
        assert out.attempt == FALLBACK_ATTEMPT
        assert f"enemy_boss\tangry\t-\t{out.line}\n" in corpus
        assert verify(inp, out, NO_SPOT_CHECK) and verify(inp, out, SPOT_CHECK)
        # Another short line of the cell, claimed as the fallback: replayed, so rejected every time.
        for other in backend.short_lines("enemy_boss", "angry"):
            if other != out.line and " " not in other:
                assert rejected(inp, with_line(out, other)), other


def test_a_false_fallback_claim_is_rejected() -> None:
    # A lazy peer that skips sampling and sends a short corpus line as "the fallback", where samples pass.
    backend = dialogue.load_ngram_backend()
    for seed in range(20):
        inp = parse_input({"persona": "pilot", "mood": "calm", "seed": seed, "max_words": 6})
        honest = compute(inp)
        assert honest.attempt < MAX_ATTEMPTS
        short = dialogue._fallback_line(backend, dialogue._resolve(inp))
        forged = msgspec.structs.replace(with_line(honest, short), attempt=FALLBACK_ATTEMPT)
        assert rejected(inp, forged)


def test_example_inputs_parse_and_compute() -> None:
    for size in ("small", "large"):
        for seed in range(5):
            raw = example(random.Random(seed), size)
            msgspec.msgpack.decode(msgspec.msgpack.encode(raw))  # builtins only
            inp = parse_input(raw)
            assert verify(inp, compute(inp), random.Random(seed))
    with pytest.raises(ValueError):
        example(random.Random(0), "huge")


def test_the_kind_is_registered() -> None:
    kind = get_kind("ai_npc_dialogue")
    assert kind.version == dialogue.VERSION
    assert kind.tolerance_note


# The filter ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["Well, damn it!", "DAMN", "d4mn pirates", "Daaamn!", "Those damned drones.", "d.a.m.n"],
)
def test_the_filter_blocks_a_blocked_word(line: str) -> None:
    assert screen_line(line) == "line holds a blocked word"


@pytest.mark.parametrize(
    "line",
    ["Hold formation,\x07 pilots.", "Bell\u200bring", "Line\nbreak", "Tab\there", "Nul\x00"],
)
def test_the_filter_blocks_control_characters(line: str) -> None:
    problem = screen_line(line)
    assert problem is not None and "non-printing" in problem


@pytest.mark.parametrize("line", ["", " Leading", "Trailing ", "Double  space", "Non\u00a0breaking"])
def test_the_filter_wants_single_spaces(line: str) -> None:
    assert screen_line(line) is not None


@pytest.mark.parametrize(
    "line",
    ["Hold formation, pilots.", "Dammit is not a word we know.", "Cockpit secure.", "Amsterdam!", "..."],
)
def test_the_filter_lets_clean_lines_through(line: str) -> None:
    assert screen_line(line) is None


# The shipped model ------------------------------------------------------------------------------------------


def test_the_shipped_model_is_the_training_of_the_shipped_corpus() -> None:
    corpus = dialogue.data_file("corpus.txt").decode("utf-8")
    assert dialogue.train_model(corpus) == dialogue.data_file("model.msgpack")


def test_the_corpus_is_dedicated_to_the_public_domain_and_large_enough() -> None:
    corpus = dialogue.data_file("corpus.txt").decode("utf-8")
    header = "\n".join(row for row in corpus.splitlines()[:12] if row.startswith("#"))
    assert "CC0" in header and "public domain" in header
    lines = dialogue.parse_corpus(corpus)
    assert 500 <= len(lines) <= 2500
    assert {(cl.persona, cl.mood) for cl in lines} == {(p, m) for p in PERSONAS for m in MOODS}


def test_training_refuses_a_bad_corpus() -> None:
    good = dialogue.data_file("corpus.txt").decode("utf-8")
    for bad_row, message in [
        ("commander\tcalm\t-\tWell, damn it.", "blocked word"),
        ("captain\tcalm\t-\tAhoy.", "unknown persona"),
        ("commander\tsleepy\t-\tZzz.", "unknown mood"),
        ("commander\tcalm\tparty\tHooray.", "unknown event"),
        ("commander\tcalm\tToo few columns", "columns"),
    ]:
        with pytest.raises(dialogue.CorpusError, match=message):
            dialogue.train_model(good + bad_row + "\n")
    only_commander = "\n".join(row for row in good.splitlines() if not row.startswith("merchant"))
    with pytest.raises(dialogue.CorpusError, match="merchant"):
        dialogue.train_model(only_commander)


# verify accepts honest work ----------------------------------------------------------------------------------

raw_inputs = st.fixed_dictionaries(
    {
        "persona": st.sampled_from((*PERSONAS, GENERIC_PERSONA)),
        "seed": st.integers(0, MAX_SEED),
    },
    optional={
        "mood": st.sampled_from(MOODS),
        "events": st.lists(st.sampled_from(EVENTS) | st.text(max_size=12), max_size=8),
        "player_words": st.text(max_size=200),
        "max_words": st.integers(1, 40),
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_inputs, verify_seed=st.integers(0, 2**32))
def test_verify_accepts_the_honest_output(raw: dict[str, Any], verify_seed: int) -> None:
    inp = parse_input(raw)
    out = compute(inp)
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(out))
    assert verify(inp, parse_output(wire), random.Random(verify_seed))
    assert verify(inp, out, SPOT_CHECK) and verify(inp, out, NO_SPOT_CHECK)
    assert agree(out, compute(inp))


# verify rejects corrupted work -------------------------------------------------------------------------------

HONEST_CASES = [parse_input(example(random.Random(1000 + index))) for index in range(30)]


@settings(max_examples=60, deadline=None)
@given(
    blob=st.binary(max_size=64) | st.text(max_size=64) | st.none() | st.integers() | st.lists(st.integers())
)
def test_garbage_outputs_are_refused(blob: Any) -> None:
    with pytest.raises(TaskOutputError):
        parse_output(blob)


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=120), case=st.integers(0, len(HONEST_CASES) - 1))
def test_garbage_lines_are_refused(text: str, case: int) -> None:
    inp = HONEST_CASES[case]
    honest = compute(inp)
    raw = msgspec.structs.asdict(with_line(honest, text))
    try:
        out = parse_output(raw)
    except TaskOutputError:
        return
    if out.line != honest.line:
        assert rejected(inp, out)


@pytest.mark.parametrize("case", range(len(HONEST_CASES)))
def test_made_up_lines_are_rejected(case: int) -> None:
    inp = HONEST_CASES[case]
    honest = compute(inp)
    words = honest.line.split(" ")
    made_up = [
        "Hold formation, pilots.",
        "Fine wares for a fine pilot, care to browse?",
        " ".join(reversed(words)),
        " ".join(words[:1] + ["really"] + words[1:]),
        honest.line.upper(),
        honest.line + "!",
    ]
    for line in made_up:
        if line != honest.line and line.count(" ") < inp.max_words:
            assert rejected(inp, with_line(honest, line)), line


def stale_is_rejected(inp: dialogue.Input, stale: Output) -> bool:
    """True when ``stale`` is rejected every time, False when it is (by chance) this input's own sample
    number ``stale.attempt``, a real sample that did not win, which only the spot check rejects (asserted)."""
    if dialogue.load_ngram_backend().is_sample(dialogue._resolve(inp), stale.attempt, stale.line):
        assert not verify(inp, stale, SPOT_CHECK)
        return False
    assert rejected(inp, stale), stale
    return True


def test_stale_lines_from_other_seeds_are_rejected() -> None:
    tried = by_chance = 0
    for inp in HONEST_CASES:
        honest = compute(inp)
        for other_seed in (inp.seed ^ 1, (inp.seed + 7919) % MAX_SEED, 0, 1, 2**62):
            stale = compute(msgspec.structs.replace(inp, seed=other_seed))
            if stale.line != honest.line:
                tried += 1
                by_chance += not stale_is_rejected(inp, stale)
    # Common lines recur across seeds: about 1 stale line in 100 is this input's sample at that attempt.
    assert tried > 100 and by_chance <= tried // 20


@pytest.mark.parametrize("case", range(len(HONEST_CASES)))
def test_truncated_lines_are_rejected(case: int) -> None:
    inp = HONEST_CASES[case]
    honest = compute(inp)
    words = honest.line.split(" ")
    truncations = [honest.line[: len(honest.line) // 2].rstrip(), honest.line[:-1]]
    if len(words) > 1:
        truncations += [" ".join(words[:-1]), " ".join(words[: len(words) // 2])]
    for line in truncations:
        if line and line != honest.line:
            assert rejected(inp, with_line(honest, line)), line


def test_lines_over_the_word_limit_are_rejected() -> None:
    for seed in range(20):
        inp = parse_input({"persona": "pilot", "seed": seed, "max_words": 4})
        long_out = compute(msgspec.structs.replace(inp, max_words=40))
        if long_out.words > 4:
            assert rejected(inp, long_out)
    inp = parse_input({"persona": "pilot", "seed": 3, "max_words": 4})
    assert rejected(inp, with_line(compute(inp), "one two three four five"))


def test_wrong_fields_are_rejected() -> None:
    inp = HONEST_CASES[0]
    honest = compute(inp)
    for forged in [
        msgspec.structs.replace(honest, words=honest.words + 1),
        msgspec.structs.replace(honest, persona=next(p for p in PERSONAS if p != honest.persona)),
        msgspec.structs.replace(honest, model="ngram-v2"),
    ]:
        assert rejected(inp, forged), forged


def lazy_outputs() -> list[tuple[dialogue.Input, Output]]:
    """What a lazy peer sends when it skips the ranking: a genuine passing sample of this very input, with
    its true attempt number, that did not win the best of CANDIDATES."""
    backend = dialogue.load_ngram_backend()
    lazy = []
    for inp in HONEST_CASES:
        honest = compute(inp)
        request = dialogue._resolve(inp)
        for attempt in range(CANDIDATES):
            line = dialogue._passing_sample(backend, request, attempt)
            if line is not None and line != honest.line:
                lazy.append((inp, msgspec.structs.replace(with_line(honest, line), attempt=attempt)))
    assert len(lazy) > 30
    return lazy


def test_samples_that_did_not_win_are_rejected_when_the_spot_check_fires() -> None:
    for inp, lazy in lazy_outputs():
        verdict = verify(inp, lazy, SPOT_CHECK)
        assert not verdict, (lazy.attempt, lazy.line)
        assert "not the best" in verdict.reason
        # Without the spot check a real sample of this input is accepted: that is the price of a cheap
        # verify, paid back by the spot check's odds, the coordinator's audits and bans.
        assert verify(inp, lazy, NO_SPOT_CHECK)


def test_the_spot_check_fires_with_the_documented_odds(monkeypatch: pytest.MonkeyPatch) -> None:
    inp = HONEST_CASES[0]
    out = compute(inp)
    replays = 0

    def counting_compute(inp: dialogue.Input) -> Output:
        nonlocal replays
        replays += 1
        return compute(inp)

    monkeypatch.setattr(dialogue, "compute", counting_compute)
    assert verify(inp, out, FixedRng(0.999 / SPOT_CHECK_ODDS)) and replays == 1
    assert verify(inp, out, FixedRng(1.0 / SPOT_CHECK_ODDS)) and replays == 1
    rng = random.Random(2024)
    trials = 4000
    replays = 0
    for _ in range(trials):
        assert verify(inp, out, rng)
    assert SPOT_CHECK_ODDS == 20  # what docs/tasks/ai_npc_dialogue.md states
    expected = trials / SPOT_CHECK_ODDS
    assert abs(replays - expected) < 4 * (expected * (1 - 1 / SPOT_CHECK_ODDS)) ** 0.5


def test_a_wrong_attempt_number_is_rejected() -> None:
    backend = dialogue.load_ngram_backend()
    tried = 0
    for inp in HONEST_CASES:
        honest = compute(inp)
        request = dialogue._resolve(inp)
        for attempt in range(MAX_ATTEMPTS):
            if attempt == honest.attempt:
                continue
            forged = msgspec.structs.replace(honest, attempt=attempt)
            if backend.sample_line(request, attempt) == honest.line:
                continue  # the same line again: this claim is as true as the honest one
            assert rejected(inp, forged), attempt
            tried += 1
    assert tried > 1000
    for attempt in (-1, FALLBACK_ATTEMPT + 1, 255, 256, 2**40):
        assert rejected(HONEST_CASES[0], msgspec.structs.replace(compute(HONEST_CASES[0]), attempt=attempt))


def test_stale_lines_from_other_personas_and_moods_are_rejected() -> None:
    tried = by_chance = 0
    for inp in HONEST_CASES:
        honest = compute(inp)
        others = [msgspec.structs.replace(inp, persona=p) for p in (*PERSONAS, GENERIC_PERSONA)]
        others += [msgspec.structs.replace(inp, mood=m) for m in MOODS]
        for other in others:
            stale = msgspec.structs.replace(compute(other), persona=inp.persona)
            if stale.line != honest.line:
                tried += 1
                by_chance += not stale_is_rejected(inp, stale)
    # With the same seed the draws are the same, and a persona's rows are shared by its moods: another
    # mood's line is now and then this input's own (losing) sample, left to the spot check.
    assert tried > 200 and by_chance <= tried // 20


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_inputs, attempt=st.integers(0, MAX_ATTEMPTS - 1), other=st.integers(0, MAX_ATTEMPTS - 1))
def test_is_sample_is_exactly_sample_line_equality(raw: dict[str, Any], attempt: int, other: int) -> None:
    backend = dialogue.load_ngram_backend()
    request = dialogue._resolve(parse_input(raw))
    line = backend.sample_line(request, attempt)
    if line is None:
        return
    assert backend.is_sample(request, attempt, line)
    assert backend.is_sample(request, other, line) == (backend.sample_line(request, other) == line)
    words = line.split(" ")
    for cut in {" ".join(words[:-1]), line[:-1], line + "!", " ".join(reversed(words))} - {line, ""}:
        assert backend.is_sample(request, attempt, cut) == (cut == line)


def test_agree_compares_lines() -> None:
    a = line_for(seed=5)
    assert agree(a, msgspec.structs.replace(a))
    assert not agree(a, with_line(a, a.line + "!"))


# Parsing ----------------------------------------------------------------------------------------------------

GOOD_INPUT: dict[str, Any] = {
    "persona": "commander",
    "mood": "calm",
    "events": ["wave_start"],
    "player_words": "Ready!",
    "seed": 7,
    "max_words": 12,
    "model": "ngram-v1",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"persona": "pirate_king"}, "persona"),
        ({"persona": 3}, "persona"),
        ({"persona": "x" * 33}, "persona"),
        ({"mood": "sleepy"}, "mood"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "seven"}, "seed"),
        ({"max_words": 0}, "max_words"),
        ({"max_words": 41}, "max_words"),
        ({"events": ["wave_start"] * 9}, "events"),
        ({"events": ["x" * 33]}, "events[0]"),
        ({"events": "wave_start"}, "events"),
        ({"events": [1]}, "events[0]"),
        ({"player_words": "a" * 201}, "player_words"),
        ({"player_words": None}, "player_words"),
        ({"model": "llama-70b"}, "model"),
    ],
)
def test_bad_inputs_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(TaskInputError) as info:
        parse_input({**GOOD_INPUT, **change})
    assert info.value.field == field


def test_bad_input_messages_name_the_limit() -> None:
    with pytest.raises(TaskInputError, match="40"):
        parse_input({**GOOD_INPUT, "max_words": 41})
    with pytest.raises(TaskInputError, match="merchant"):
        parse_input({**GOOD_INPUT, "persona": "pirate_king"})
    with pytest.raises(TaskInputError, match="ngram-v1"):
        parse_input({**GOOD_INPUT, "model": "llama-70b"})


# Other models: features and requirements ------------------------------------------------------------------


def test_the_shipped_model_needs_no_feature_and_none_is_advertised() -> None:
    assert dialogue.requirements(parse_input(GOOD_INPUT)) == frozenset()
    assert dialogue.features() == frozenset()
    assert get_kind(dialogue.NAME).requirements(parse_input(GOOD_INPUT)) == frozenset()


def _with_models(monkeypatch: pytest.MonkeyPatch, installed: dict[str, bool]) -> None:
    """Register extra model ids (each serving the shipped n-gram model), installed on this machine or not."""
    models = dict(dialogue.MODELS)
    for model_id, present in installed.items():
        models[model_id] = dialogue.ModelBackend(dialogue.load_ngram_backend, lambda present=present: present)
    monkeypatch.setattr(dialogue, "MODELS", models)


def test_another_model_is_required_of_peers_and_advertised_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_models(monkeypatch, {"twin-v1": True, "absent-v1": False})
    inp = parse_input({**GOOD_INPUT, "model": "twin-v1"})
    assert dialogue.requirements(inp) == frozenset({"model=twin-v1"})
    assert dialogue.features() == frozenset({"model=twin-v1"})  # not absent-v1: this machine lacks it
    out = compute(inp)
    assert out.model == "twin-v1" and dialogue.verify(inp, out, random.Random(1))


def test_a_model_not_installed_here_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_models(monkeypatch, {"absent-v1": False})
    with pytest.raises(TaskInputError, match="not installed") as info:
        parse_input({**GOOD_INPUT, "model": "absent-v1"})
    assert info.value.field == "model"


def test_every_model_id_makes_a_valid_feature_name() -> None:
    from p2c2r import protocol as p
    from p2c2r.tasks import qualified_feature

    for model_id in dialogue.MODELS:
        feature = qualified_feature(dialogue.NAME, dialogue.model_feature(model_id))
        msgspec.convert([feature], type=list[p.FeatureName])


@pytest.mark.parametrize("raw", [None, "commander", 42, [], {}, {"seed": 1}, {**GOOD_INPUT, "colour": "red"}])
def test_malformed_inputs_are_refused(raw: Any) -> None:
    with pytest.raises(TaskInputError):
        parse_input(raw)


def test_unknown_events_are_ignored_and_defaults_apply() -> None:
    inp = parse_input({"persona": "pilot", "seed": 3, "events": ["made_up_event"]})
    assert (inp.mood, inp.max_words, inp.model, inp.player_words) == ("calm", 20, "ngram-v1", "")
    assert compute(inp) == compute(msgspec.structs.replace(inp, events=()))


@settings(max_examples=100, deadline=None)
@given(
    raw=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    )
)
def test_parse_input_never_crashes_on_garbage(raw: Any) -> None:
    try:
        parse_input(raw)
    except TaskInputError:
        pass


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"line": ""}, "line"),
        ({"line": "x" * 401}, "line"),
        ({"line": "Bad\x07line"}, "line"),
        ({"line": "Well, damn."}, "line"),
        ({"words": 5}, "words"),
        ({"words": 41}, "words"),
        ({"colour": "red"}, "input"),
        ({"persona": None}, "persona"),
        ({"attempt": -1}, "attempt"),
        ({"attempt": 49}, "attempt"),
    ],
)
def test_bad_outputs_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    good = {"line": "Hold formation.", "persona": "commander", "model": "ngram-v1", "words": 2, "attempt": 0}
    with pytest.raises(TaskOutputError) as info:
        parse_output({**good, **change})
    assert info.value.field == field
