"""Task kind ``ai_npc_dialogue``: the next line of an NPC in a space shooter, from a trigram model on the CPU.

The gamer sends who speaks (``persona``), in which ``mood``, what just happened in the game (``events``,
oldest first), what the player said (``player_words``), a ``seed`` and a word limit; the peer returns one
line of dialogue.

The model (id ``ngram-v1``) is a word trigram model trained by ``scripts/train_dialogue.py`` on the CC0 corpus
in ``dialogue_data/corpus.txt`` and shipped as ``dialogue_data/model.msgpack``; nothing is downloaded at run
time. Generation, fixed because two peers must produce the same line:

* Tokens are the corpus's space-separated words with their punctuation attached, so a line is its tokens
  joined by single spaces.
* Conditioning by backoff over three layers of counts: the (persona, mood) cell, the persona, everything.
  Where both the cell and the persona know the context, the next token is drawn from their mixture, the
  cell weighing 3 in 4 (``CELL_ODDS``); from the persona's row alone where the cell never saw the context,
  and from the general row where the persona never did. The ``generic`` persona uses the mood's lines
  across personas, then everything. The mixtures are precomputed per (persona, mood) at load time.
* Events bias the opening: a line starts, with odds 3 in 4, from the context ``(<s>, <event:E>)`` that
  training fills with the first words of lines written for event E, E drawn among the known events with
  weights favouring the most recent one. Unknown event names are ignored.
* Sample number ``attempt`` takes its draws from SHAKE-128 of the seed and the attempt (:func:`sample_draws`):
  32-bit little-endian words, the first for the opening, the i-th for the i-th token, each picking the
  token whose range of ``DRAW_SPAN`` (its integer cumulative count, scaled) holds it. Integers only, so the
  same on every platform and Python version.
* Best of ``CANDIDATES``: samples over ``max_words`` words or refused by :func:`screen_line` are skipped;
  among the first ``CANDIDATES`` that pass, the one with the highest integer score wins, the earliest
  among equals. The score rewards mentioning any keyword of the player's words or of the events, and
  penalises repeated words and lengths far off ``TARGET_WORDS``; it is capped, so the first sample that
  reaches the cap wins without the rest being drawn. When no attempt out of ``MAX_ATTEMPTS`` passes, the
  line is one of the model's short corpus lines for the cell, chosen by the seed. The output names the
  winning ``attempt`` (``FALLBACK_ATTEMPT`` for the fallback line).

:func:`verify` checks the cheap things first (fields, word count and limit, the filter), then that the line
is sample ``attempt`` of this input: each draw of that one sample must fall in the range of the line's
next token (:meth:`NgramBackend.is_sample`), which rejects a made-up line, a truncated one and another
input's line (another seed, persona, mood, events) every time, unless that line happens to be this input's
own sample ``attempt`` too (about 1 stale line in 100 for another seed of the same input; far fewer
otherwise). What one sample cannot show is that it won the ranking, so with odds 1 in ``SPOT_CHECK_ODDS``,
chosen by ``rng``, verify replays the ranking and wants that very sample: a lazy peer that sends its
first passing sample (or a lucky stale line) is caught there, by the coordinator's quorum and audits, and
banned. A fallback claim is always replayed. Version 1 replayed the ranking every time (verify cost 0.9 x
compute); version 2 added ``attempt`` and changed the draws, so its lines differ from version 1's.

Other models: the input's ``model`` names an entry of ``MODELS`` (see :class:`DialogueBackend` and
:class:`ModelBackend`). The shipped ``ngram-v1`` runs on every peer; any other model runs only where it is
installed: :func:`features` lists the installed ones (``model=ID``), peers advertise them, and
:func:`requirements` makes the scheduler send a task naming such a model only to peers that have it. A model
id not in ``MODELS``, or not installed on the machine parsing the input (the coordinator must have every
model it accepts tasks for, to verify them), is refused with a ``TaskInputError`` on ``model``.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import unicodedata
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Annotated, Any, Protocol

import msgspec
from msgspec import Meta

from p2c2r.errors import TaskInputError, TaskOutputError
from p2c2r.tasks.base import NO_FEATURES, Verdict, convert_input, convert_output

NAME = "ai_npc_dialogue"
VERSION = "2"
TOLERANCE_NOTE = "exact: two outputs agree only when their lines are identical, character for character"

PERSONAS: tuple[str, ...] = ("commander", "pilot", "enemy_grunt", "enemy_boss", "merchant")
GENERIC_PERSONA = "generic"
"""Speaks with the mood's lines of every persona; for NPCs that fit none of ``PERSONAS``."""
MOODS: tuple[str, ...] = ("calm", "alarmed", "angry", "cheerful")
EVENTS: tuple[str, ...] = (
    "wave_start",
    "enemy_destroyed",
    "player_hit",
    "low_health",
    "boss_appears",
    "powerup",
    "ally_down",
    "victory",
)
NGRAM_MODEL_ID = "ngram-v1"

MAX_EVENTS = 8
MAX_EVENT_CHARS = 32
MAX_PLAYER_WORDS_CHARS = 200
MAX_WORDS = 40
MAX_LINE_CHARS = 400
MAX_SEED = 2**63 - 1
MAX_NAME_CHARS = 32

CANDIDATES = 6
MAX_ATTEMPTS = 48
TARGET_WORDS = 10
LENGTH_SLACK = 4
"""Lines within this many words of ``TARGET_WORDS`` (or of max_words, when smaller) score alike."""
KEYWORD_WEIGHT = 8
"""The score of a line that mentions a keyword; the cap, when the request has keywords."""
REPEAT_PENALTY = 2
REPEAT_MIN_CHARS = 4
"""Only words this long count as repeated: "the" twice is English, "sharp" twice is a stuck model."""
MAX_PLAYER_KEYWORDS = 8
CELL_ODDS = 4
"""The cell's row is used 3 times in 4 where both the cell and the persona know the context."""
EVENT_OPENING_ODDS = 4
"""A line opens from an event 3 times in 4 when the input names a known event."""
FALLBACK_ATTEMPT = MAX_ATTEMPTS
"""The ``attempt`` of an output whose line is the fallback: none of the ``MAX_ATTEMPTS`` samples passed."""
SPOT_CHECK_ODDS = 20
"""verify replays the whole best-of-``CANDIDATES`` ranking on 1 output in this many (chosen by its rng)."""
SILENT_LINE = "..."
"""The line of last resort, when a backend offers no short line that fits; it passes every filter."""

# Words that make a line relevant to each event.
EVENT_TOPICS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "wave_start": frozenset({"wave", "incoming", "contact", "here", "come"}),
        "enemy_destroyed": frozenset({"kill", "down", "splash", "destroyed", "shot", "got"}),
        "player_hit": frozenset({"hit", "shield", "fire", "damage", "ouch"}),
        "low_health": frozenset({"hull", "shield", "repair", "damaged", "fume", "home", "back"}),
        "boss_appears": frozenset({"flagship", "overlord", "boss", "capital", "ship"}),
        "powerup": frozenset({"supply", "supplies", "weapon", "upgraded", "crate", "gun", "recharged"}),
        "ally_down": frozenset({"lost", "down", "rescue", "friend", "fallen", "eject"}),
        "victory": frozenset({"victory", "won", "clear", "complete", "home", "celebrate"}),
    }
)

_KNOWN_EVENTS = frozenset(EVENTS)

# Player words too common to say what the player is talking about.
_STOPWORDS = frozenset(
    {
        "the", "and", "you", "are", "for", "that", "this", "with", "have", "what", "your", "not", "but",
        "was", "can", "get", "all", "just", "out", "now", "too", "there", "they", "them", "then", "here",
        "our", "from", "will", "its", "how", "who", "why", "where", "when", "yes", "did", "does", "let",
        "lets", "into", "about", "would", "could", "should", "been", "were", "has", "had", "any", "some",
        "one", "two", "very", "really", "okay", "please",
    }
)  # fmt: skip

# Hex prefixes of SHA-256("p2c2r-dialogue-blocklist:" + folded word) for a short list of profanity and
# slurs, so that the source does not spell them out. See :func:`_fold_word` for the folding.
_BLOCKED_WORD_DIGESTS = frozenset(
    {
        "023b77e23cce5c15", "092deb766cfc31d8", "09e5590af0be06f8", "0c30c8a50fa1be4a", "0e852b5237696ab0",
        "0fc4eca8a8f33c04", "114a09ce7b918b06", "1659ad1a106a1398", "1741291cdab27745", "1ad5b55ebfa36e9b",
        "1b2ec6528306b7ba", "1ce3fe2ea7a40036", "3b974360b254c469", "44fbf160179e5fb0", "4bd5c89bcbc4decd",
        "58f31fc7128d15d1", "69ae86d9ff927f5d", "77ca244db2848cd1", "89e9b0e3768e8ce7", "9897a744ecd2eef1",
        "c52013527daa62c1", "c6c4181b4fb51ab9", "ce9e3a8401aea371", "d40102a117849c91", "dbefc84cabc52539",
        "ea6eb2765b6b87a1", "f56f1e2ec6bc4bbe", "f954fb259ac0ff3b",
    }
)  # fmt: skip
_BLOCKLIST_SALT = b"p2c2r-dialogue-blocklist:"
# Inflections stripped before the blocklist lookup, so that plurals and participles are caught too.
_BLOCKLIST_SUFFIXES = ("s", "es", "ed", "ing", "er", "ers", "y")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_NOT_LETTERS = re.compile(r"[^a-z]+")
_LETTER_RUNS = re.compile(r"(.)\1+")
_ASCII_WORDS = re.compile(r"[a-z]+")


# Wire types ----------------------------------------------------------------------------------------------

Name = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]


class Input(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    persona: Name
    """One of ``PERSONAS`` or ``"generic"``."""
    seed: Annotated[int, Meta(ge=0, le=MAX_SEED)]
    mood: Name = "calm"
    """One of ``MOODS``."""
    events: Annotated[
        tuple[Annotated[str, Meta(max_length=MAX_EVENT_CHARS)], ...], Meta(max_length=MAX_EVENTS)
    ] = ()
    """Recent game events, oldest first; names outside ``EVENTS`` are ignored."""
    player_words: Annotated[str, Meta(max_length=MAX_PLAYER_WORDS_CHARS)] = ""
    max_words: Annotated[int, Meta(ge=1, le=MAX_WORDS)] = 20
    model: Name = NGRAM_MODEL_ID


class Output(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    line: Annotated[str, Meta(min_length=1, max_length=MAX_LINE_CHARS)]
    persona: Name
    model: Name
    words: Annotated[int, Meta(ge=1, le=MAX_WORDS)]
    """Number of space-separated words in ``line``."""
    attempt: Annotated[int, Meta(ge=0, le=FALLBACK_ATTEMPT)]
    """The sample the line is (0 .. MAX_ATTEMPTS - 1), or ``FALLBACK_ATTEMPT`` for the fallback line. It is
    what lets verify replay one sample instead of the whole ranking."""


# The filter ----------------------------------------------------------------------------------------------


def screen_line(line: str) -> str | None:
    """Why ``line`` may not be shown to a player, or None when it may.

    Refuses empty lines, control and other non-printing characters, whitespace other than single spaces
    between words, and words on the blocklist (case, common digit-for-letter swaps, repeated letters,
    punctuation inside the word and a few inflections do not hide them).
    """
    if line in _CLEAN_LINES:  # verify screens every output, and most lines recur verbatim
        return None
    if not line:
        return "line is empty"
    plain = line.isascii() and line.isprintable()
    if not plain:  # the per-character scan is for the rare other lines
        for char in line:
            if unicodedata.category(char)[0] == "C":
                return f"line holds the non-printing character U+{ord(char):04X}"
    words = line.split(" ")
    # In a printable ASCII line the only whitespace is the space, so only empty words (doubled, leading or
    # trailing spaces) can be wrong; the per-word test is for the rest. Cheap matters: verify screens every line.
    if "" in words or not (plain or all(map(str.isprintable, words))):
        return "words must be separated by single spaces, with nothing before the first or after the last"
    # Known-clean words first, in one C-level test: the same few hundred words recur in every line.
    if not _CLEAN_WORDS.issuperset(words):
        if any(map(_word_is_blocked, words)):
            return "line holds a blocked word"
        if len(_CLEAN_WORDS) < _CLEAN_WORDS_MAX:
            _CLEAN_WORDS.update(words)
    if len(_CLEAN_LINES) >= _CLEAN_LINES_MAX:
        _CLEAN_LINES.clear()
    _CLEAN_LINES.add(line)
    return None


# Words seen to pass the blocklist; bounded, so that a stream of made-up words cannot grow it without end.
_CLEAN_WORDS: set[str] = set()
_CLEAN_WORDS_MAX = 16384
# Lines seen to pass the whole filter: one probe instead of the split and the word test. Bounded like
# ``_CLEAN_WORDS``, but started over when full, as new lines keep coming where new words soon stop.
_CLEAN_LINES: set[str] = set()
_CLEAN_LINES_MAX = 16384


def _fold_word(word: str) -> str:
    folded = unicodedata.normalize("NFKC", word).casefold().translate(_LEET)
    return _LETTER_RUNS.sub(r"\1", _NOT_LETTERS.sub("", folded))


# A memo on a pure function: the same few hundred words recur in every line a model produces.
@lru_cache(maxsize=16384)
def _word_is_blocked(word: str) -> bool:
    folded = _fold_word(word)
    forms = {folded}
    forms.update(folded[: -len(suffix)] for suffix in _BLOCKLIST_SUFFIXES if folded.endswith(suffix))
    return any(
        hashlib.sha256(_BLOCKLIST_SALT + form.encode()).hexdigest()[:16] in _BLOCKED_WORD_DIGESTS
        for form in forms
        if form
    )


# Parsing -------------------------------------------------------------------------------------------------


def parse_input(raw: Any) -> Input:
    inp: Input = convert_input(raw, Input)
    if inp.persona not in PERSONAS and inp.persona != GENERIC_PERSONA:
        known = ", ".join((*PERSONAS, GENERIC_PERSONA))
        raise TaskInputError("persona", f"unknown persona {inp.persona!r}; known: {known}")
    if inp.mood not in MOODS:
        raise TaskInputError("mood", f"unknown mood {inp.mood!r}; known: {', '.join(MOODS)}")
    model = MODELS.get(inp.model)
    if model is None:
        raise TaskInputError("model", f"unknown model id {inp.model!r}; known: {', '.join(MODELS)}")
    if not model.installed():
        raise TaskInputError("model", f"model {inp.model!r} is not installed on this machine")
    return inp


def parse_output(raw: Any) -> Output:
    out: Output = convert_output(raw, Output)
    problem = screen_line(out.line)
    if problem is not None:
        raise TaskOutputError("line", problem)
    if out.words != out.line.count(" ") + 1:
        raise TaskOutputError("words", f"must be the number of words in line ({out.line.count(' ') + 1})")
    return out


# Compute -------------------------------------------------------------------------------------------------


# A msgspec struct rather than a frozen dataclass: built on every verify, and its construction is 10x cheaper.
class DialogueRequest(msgspec.Struct, frozen=True):
    """An input resolved to what a backend conditions on."""

    persona: str
    mood: str
    events: tuple[str, ...]
    """Known events only, oldest first."""
    keywords: frozenset[str]
    """Topic forms of the player's keywords and of the events' topic words."""
    seed: int
    max_words: int


class DialogueBackend(Protocol):
    """A model that can serve ``ai_npc_dialogue``.

    Every method must be a deterministic function of its arguments on every platform, because the
    coordinator's :func:`verify` checks samples with ``is_sample`` and replays ``sample_line``.
    """

    def sample_line(self, request: DialogueRequest, attempt: int) -> str | None:
        """Sample number ``attempt`` (0 <= attempt < MAX_ATTEMPTS) for the request, words joined by single
        spaces; None when it would exceed ``request.max_words`` words. ``request.keywords`` is not used."""
        ...

    def is_sample(self, request: DialogueRequest, attempt: int, line: str) -> bool:
        """Exactly ``sample_line(request, attempt) == line``; verify calls it for every output, so a backend
        should answer it well below the cost of drawing the sample."""
        ...

    def short_lines(self, persona: str, mood: str) -> Sequence[str]:
        """Safe lines of a few words for the fallback, shortest first."""
        ...


def compute(inp: Input) -> Output:
    request = _resolve(inp)
    backend = _backend(inp.model)
    best = _best_sample(backend, request)
    attempt, line = best if best is not None else (FALLBACK_ATTEMPT, _fallback_line(backend, request))
    return Output(line=line, persona=inp.persona, model=inp.model, words=line.count(" ") + 1, attempt=attempt)


def _best_sample(backend: DialogueBackend, request: DialogueRequest) -> tuple[int, str] | None:
    """The attempt and line of the best of the first ``CANDIDATES`` passing samples, the earliest among
    equals; None if none pass."""
    cap = KEYWORD_WEIGHT if request.keywords else 0
    best: tuple[int, str] | None = None
    best_score = 0
    passed = 0
    for attempt in range(MAX_ATTEMPTS):
        line = _passing_sample(backend, request, attempt)
        if line is None:
            continue
        score = _score(line, request)
        if best is None or score > best_score:
            best, best_score = (attempt, line), score
        passed += 1
        # Nothing later can score above the cap, and the earliest wins among equals: stopping is exact.
        if passed == CANDIDATES or score == cap:
            break
    return best


def _passing_sample(backend: DialogueBackend, request: DialogueRequest, attempt: int) -> str | None:
    """Sample ``attempt`` if it is a candidate: within the word and character limits and through the filter."""
    line = backend.sample_line(request, attempt)
    if line is None or len(line) > MAX_LINE_CHARS or screen_line(line) is not None:
        return None
    return line


def _resolve(inp: Input, *, with_keywords: bool = True) -> DialogueRequest:
    """The request for a backend; without keywords (they only rank samples) for verify's one-sample check."""
    events = tuple(filter(_KNOWN_EVENTS.__contains__, inp.events)) if inp.events else ()
    if not with_keywords:
        return DialogueRequest(inp.persona, inp.mood, events, _NO_KEYWORDS, inp.seed, inp.max_words)
    keywords = set(_player_keywords(inp.player_words))
    for event in events:
        keywords.update(_event_keywords(event))
    return DialogueRequest(
        persona=inp.persona,
        mood=inp.mood,
        events=events,
        keywords=frozenset(keywords),
        seed=inp.seed,
        max_words=inp.max_words,
    )


_NO_KEYWORDS: frozenset[str] = frozenset()


@lru_cache(maxsize=16384)  # pure, and called for every word of every candidate
def _topic_form(word: str) -> str:
    """A word lowercased, without punctuation and without a plural ``s``: what keyword matching compares."""
    letters = _NOT_LETTERS.sub("", word.casefold())
    return letters[:-1] if len(letters) > 3 and letters.endswith("s") else letters


@cache
def _event_keywords(event: str) -> frozenset[str]:
    return frozenset(_topic_form(word) for word in EVENT_TOPICS[event])


def _player_keywords(player_words: str) -> list[str]:
    keywords: list[str] = []
    for word in _ASCII_WORDS.findall(player_words.casefold()):
        form = _topic_form(word)
        if len(form) >= 3 and form not in _STOPWORDS and form not in keywords:
            keywords.append(form)
            if len(keywords) == MAX_PLAYER_KEYWORDS:
                break
    return keywords


def _score(line: str, request: DialogueRequest) -> int:
    forms = [_topic_form(word) for word in line.split(" ")]
    mentions_keyword = not request.keywords.isdisjoint(forms)
    long_forms = [form for form in forms if len(form) >= REPEAT_MIN_CHARS]
    repeats = len(long_forms) - len(set(long_forms))
    off_length = max(0, abs(len(forms) - min(request.max_words, TARGET_WORDS)) - LENGTH_SLACK)
    return KEYWORD_WEIGHT * mentions_keyword - REPEAT_PENALTY * repeats - off_length


def _fallback_line(backend: DialogueBackend, request: DialogueRequest) -> str:
    fitting = [
        line
        for line in backend.short_lines(request.persona, request.mood)
        if line.count(" ") < request.max_words and screen_line(line) is None
    ]
    return fitting[request.seed % len(fitting)] if fitting else SILENT_LINE


# Verify and agree ----------------------------------------------------------------------------------------


def verify(inp: Input, out: Output, rng: random.Random) -> Verdict:
    """Sound on what the line is, spot-checked on whether it won; about 0.3 x :func:`compute` in all, most
    of it on lines that the memo of :meth:`NgramBackend.is_sample` has not seen yet.

    Always: the fields, the limits, the filter, and the line is sample ``out.attempt`` of this input (one
    sample checked, not the ranking redrawn). With odds 1 in ``SPOT_CHECK_ODDS`` (``rng``): the whole
    ranking is replayed and must pick that very sample. A fallback line is always replayed in full.
    """
    if out.model != inp.model:
        return Verdict.reject(f"model is {out.model!r}, the input asked for {inp.model!r}")
    if out.persona != inp.persona:
        return Verdict.reject(f"persona is {out.persona!r}, the input asked for {inp.persona!r}")
    if type(out.attempt) is not int or not 0 <= out.attempt <= FALLBACK_ATTEMPT:
        return Verdict.reject(f"attempt is {out.attempt!r}, not within 0 .. {FALLBACK_ATTEMPT}")
    if len(out.line) > MAX_LINE_CHARS:
        return Verdict.reject(f"line is over {MAX_LINE_CHARS} characters")
    problem = screen_line(out.line)
    if problem is not None:
        return Verdict.reject(problem)
    word_count = out.line.count(" ") + 1
    if out.words != word_count:
        return Verdict.reject(f"words is {out.words}, the line has {word_count}")
    if word_count > inp.max_words:
        return Verdict.reject(f"line has {word_count} words, over max_words={inp.max_words}")
    backend = _backend(inp.model)
    if out.attempt == FALLBACK_ATTEMPT:
        # Rare (tiny max_words), and a lazy peer could claim it to skip sampling: replay, stopping at the
        # first sample that passes, which proves the claim false.
        request = _resolve(inp)
        if any(_passing_sample(backend, request, attempt) is not None for attempt in range(MAX_ATTEMPTS)):
            return Verdict.reject("claims the fallback line, but a sample passes")
        if out.line != _fallback_line(backend, request):
            return Verdict.reject("line is not the fallback line for this input and seed")
        return Verdict.accept()
    # The proof that the line is this input's (persona, mood, events, seed, max_words) and not made up, cut
    # short, or another input's: a line is a given sample only if every one of its draws picks its token.
    if not backend.is_sample(_resolve(inp, with_keywords=False), out.attempt, out.line):
        return Verdict.reject(f"line is not sample {out.attempt} of the model for this input and seed")
    # What one sample cannot show is that it won the best of CANDIDATES: a lazy peer sending its first
    # passing sample saves most of the work. Redrawing the ranking costs a compute, so it is a spot check;
    # the coordinator's audits and bans turn 1 in SPOT_CHECK_ODDS per task into a short career for cheats.
    if rng.random() * SPOT_CHECK_ODDS < 1:
        expected = compute(inp)
        if (expected.attempt, expected.line) != (out.attempt, out.line):
            return Verdict.reject(
                f"sample {out.attempt} is not the best of {CANDIDATES}: sample {expected.attempt} is"
            )
    return _ACCEPTED


# Verdicts are immutable, and building one costs as much as all of verify's field checks together.
_ACCEPTED = Verdict.accept()


def agree(a: Output, b: Output) -> bool:
    return a.line == b.line


# Example -------------------------------------------------------------------------------------------------

_EXAMPLE_PLAYER_WORDS = (
    "",
    "Where is the flagship?",
    "My shields are down, cover me!",
    "What do you have for sale?",
    "Nice shot!",
    "Any repairs for my hull?",
    "Who are you calling rebel scum?",
    "Thanks for the help out there.",
)


def example(rng: random.Random, size: str = "small") -> dict[str, Any]:
    if size not in ("small", "large"):
        raise ValueError(f"size must be 'small' or 'large', got {size!r}")
    large = size == "large"
    event_count = MAX_EVENTS if large else rng.randint(0, 2)
    words = " ".join(rng.choice(_EXAMPLE_PLAYER_WORDS) for _ in range(8 if large else 1)).strip()
    return {
        "persona": rng.choice(PERSONAS),
        "mood": rng.choice(MOODS),
        "events": [rng.choice(EVENTS) for _ in range(event_count)],
        "player_words": words[:MAX_PLAYER_WORDS_CHARS],
        "seed": rng.randrange(MAX_SEED + 1),
        "max_words": MAX_WORDS if large else 16,
        "model": NGRAM_MODEL_ID,
    }


# The ngram-v1 backend ------------------------------------------------------------------------------------

MODEL_FORMAT = "p2c2r-dialogue-ngram/1"
BOS = "<s>"
EOS = "</s>"
_BOS_ID = 0
_EOS_ID = 1
SHORT_LINE_WORDS = 3
"""Corpus lines of at most this many words are kept in the model for the fallback."""


def _event_token(event: str) -> str:
    return f"<event:{event}>"


class CellCounts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The counts of one (persona, mood) cell of the corpus."""

    persona: str
    mood: str
    trigrams: list[int]
    """Flattened ``(first, second, next, count)`` token-id quadruples, sorted."""
    short_lines: list[str]
    """Lines of at most ``SHORT_LINE_WORDS`` words, shortest first, then alphabetical."""


class ModelFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    model_id: str
    corpus_sha256: str
    vocabulary: list[str]
    """Token ids: ``<s>`` is 0, ``</s>`` is 1, then one marker per event in ``EVENTS`` order, then words."""
    cells: list[CellCounts]
    """One per (persona, mood), in ``PERSONAS`` x ``MOODS`` order."""


class CorpusError(ValueError):
    """The corpus breaks a rule the model relies on (raised at training time, never at run time)."""


@dataclass(frozen=True, slots=True)
class CorpusLine:
    persona: str
    mood: str
    event: str | None
    text: str


def parse_corpus(text: str) -> list[CorpusLine]:
    """Rows ``persona<TAB>mood<TAB>event or -<TAB>text``; ``#`` comments and blank lines skipped."""
    lines: list[CorpusLine] = []
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.strip() or row.startswith("#"):
            continue
        columns = row.split("\t")
        if len(columns) != 4:
            raise CorpusError(f"corpus line {number}: expected 4 tab-separated columns, got {len(columns)}")
        persona, mood, event, line = columns
        if persona not in PERSONAS:
            raise CorpusError(f"corpus line {number}: unknown persona {persona!r}")
        if mood not in MOODS:
            raise CorpusError(f"corpus line {number}: unknown mood {mood!r}")
        if event != "-" and event not in EVENTS:
            raise CorpusError(f"corpus line {number}: unknown event {event!r}")
        problem = screen_line(line)
        if problem is not None:
            raise CorpusError(f"corpus line {number}: {problem}")
        if line.count(" ") + 1 > MAX_WORDS or len(line) > MAX_LINE_CHARS:
            raise CorpusError(
                f"corpus line {number}: longer than {MAX_WORDS} words or {MAX_LINE_CHARS} chars"
            )
        lines.append(CorpusLine(persona, mood, None if event == "-" else event, line))
    _check_coverage(lines)
    return lines


def _check_coverage(lines: Sequence[CorpusLine]) -> None:
    # Backoff stays within a persona only if the persona knows every event opening, and the fallback
    # needs a one-word line in every cell to honour max_words=1.
    one_word_cells = {(cl.persona, cl.mood) for cl in lines if " " not in cl.text}
    event_cells = {(cl.persona, cl.event) for cl in lines if cl.event is not None}
    for persona in PERSONAS:
        for mood in MOODS:
            if (persona, mood) not in one_word_cells:
                raise CorpusError(f"no one-word line for persona {persona!r} in mood {mood!r}")
        for event in EVENTS:
            if (persona, event) not in event_cells:
                raise CorpusError(f"no line for persona {persona!r} on event {event!r}")


def train_model(corpus_text: str) -> bytes:
    """The ``model.msgpack`` bytes for a corpus; the same corpus always gives the same bytes."""
    lines = parse_corpus(corpus_text)
    specials = [BOS, EOS, *(_event_token(event) for event in EVENTS)]
    words = sorted({word for cl in lines for word in cl.text.split(" ")})
    token_id = {token: index for index, token in enumerate([*specials, *words])}
    counts: dict[tuple[str, str], Counter[tuple[int, int, int]]] = defaultdict(Counter)
    short: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cl in lines:
        cell = counts[(cl.persona, cl.mood)]
        ids = [token_id[word] for word in cl.text.split(" ")]
        padded = [_BOS_ID, _BOS_ID, *ids, _EOS_ID]
        cell.update(zip(padded, padded[1:], padded[2:]))
        if cl.event is not None:
            # Only the opening is conditioned on the event: (<s>, E) -> first word -> second word.
            opening = [_BOS_ID, token_id[_event_token(cl.event)], *ids[:2], _EOS_ID][:4]
            cell.update(zip(opening, opening[1:], opening[2:]))
        if len(ids) <= SHORT_LINE_WORDS:
            short[(cl.persona, cl.mood)].add(cl.text)
    cells = []
    for persona in PERSONAS:
        for mood in MOODS:
            flat = [
                value
                for trigram, count in sorted(counts[(persona, mood)].items())
                for value in (*trigram, count)
            ]
            ordered_short = sorted(short[(persona, mood)], key=lambda text: (text.count(" "), text))
            cells.append(CellCounts(persona=persona, mood=mood, trigrams=flat, short_lines=ordered_short))
    model = ModelFile(
        format=MODEL_FORMAT,
        model_id=NGRAM_MODEL_ID,
        corpus_sha256=hashlib.sha256(corpus_text.encode()).hexdigest(),
        vocabulary=[*specials, *words],
        cells=cells,
    )
    return msgspec.msgpack.encode(model)


def data_file(name: str) -> bytes:
    """A file shipped in ``dialogue_data`` (the corpus, the model)."""
    return resources.files("p2c2r.tasks").joinpath("dialogue_data", name).read_bytes()


Row = tuple[tuple[int, ...], tuple[int, ...]]
"""Next-token ids and their cumulative counts, for one context."""
Table = Mapping[int, Row]
"""Rows by context key ``first * vocabulary_size + second``."""
DrawRow = tuple[tuple[int, ...], tuple[int, ...]]
"""Next-token ids and the cumulative thresholds out of ``DRAW_SPAN`` that select them, for one context."""
Trigram = tuple[str, str, str]
"""Two words of context and the next, by their text; markers as in ``_marker_names``."""

_LINE_MEMO_MAX = 16384
"""Lines whose draw ranges verify keeps (a few MiB); the memo starts over when full."""
DRAW_BITS = 32
DRAW_SPAN = 1 << DRAW_BITS
"""A draw is a 32-bit word; the token drawn is the first whose threshold exceeds it."""
_DRAW_DOMAIN = b"p2c2r-dialogue-draws/2:"
# Unpackers by word count; little-endian, so that every platform reads the same words from the same bytes.
_UNPACK_DRAWS = tuple(struct.Struct(f"<{count}I").unpack for count in range(MAX_WORDS + 3))


def sample_draws(seed: int, attempt: int, count: int) -> tuple[int, ...]:
    """The first ``count`` 32-bit draws of sample ``attempt`` for ``seed``.

    A counter-based generator (SHAKE-128 of the seed and the attempt) instead of ``random.Random``: seeding a
    Mersenne Twister cost a third of a sample, and this lets :func:`verify` reach sample ``attempt`` without
    drawing the ones before it. SHAKE's output for a shorter length is a prefix of the longer one, so a
    verifier that knows the line's length asks for just the draws the line used.
    """
    key = _DRAW_DOMAIN + seed.to_bytes(8, "little") + attempt.to_bytes(1, "little")
    return _UNPACK_DRAWS[count](hashlib.shake_128(key).digest(4 * count))


def _tables(quadruple_lists: Iterable[Sequence[int]], vocabulary_size: int) -> Table:
    merged: dict[int, Counter[int]] = defaultdict(Counter)
    for flat in quadruple_lists:
        for offset in range(0, len(flat), 4):
            first, second, following, count = flat[offset : offset + 4]
            merged[first * vocabulary_size + second][following] += count
    table: dict[int, Row] = {}
    for key, followers in merged.items():
        ordered = sorted(followers.items())
        running = 0
        cumulative = []
        for _, count in ordered:
            running += count
            cumulative.append(running)
        table[key] = (tuple(following for following, _ in ordered), tuple(cumulative))
    return table


def _counts(row: Row) -> dict[int, int]:
    following, cumulative = row
    return {token: high - low for token, low, high in zip(following, (0, *cumulative), cumulative)}


def _draw_row(weights: Mapping[int, int]) -> DrawRow:
    ordered = sorted(weights.items())
    total = sum(weight for _, weight in ordered)
    running = 0
    thresholds = []
    for _, weight in ordered:
        running += weight
        thresholds.append((running << DRAW_BITS) // total)
    return tuple(token for token, _ in ordered), tuple(thresholds)


def _mixed_row(specific: Row, broad: Row) -> DrawRow:
    """One distribution for "the specific row CELL_ODDS - 1 times in CELL_ODDS, else the broad row": a single
    draw per token then serves both layers, and a verifier checks each token with one range test."""
    narrow, wide = _counts(specific), _counts(broad)
    narrow_total, wide_total = sum(narrow.values()), sum(wide.values())
    return _draw_row(
        {
            token: (CELL_ODDS - 1) * narrow.get(token, 0) * wide_total + wide.get(token, 0) * narrow_total
            for token in narrow.keys() | wide.keys()
        }
    )


def _marker_names(vocabulary: Sequence[str]) -> tuple[str, ...]:
    """Token texts for verify's trigram keys, with a space before each marker (``<s>``, ``</s>``,
    ``<event:E>``): no piece of ``line.split(" ")`` holds a space, so no word of a line can pass for one."""
    first_word = 2 + len(EVENTS)
    return tuple(" " + token if index < first_word else token for index, token in enumerate(vocabulary))


@dataclass(frozen=True, slots=True)
class View:
    """What sampling needs for one (persona, mood): the layers merged into one draw row per context."""

    rows: Mapping[int, DrawRow]
    """By context key; contexts the view does not know fall back to the general rows."""
    spans: dict[Trigram, tuple[int, int]]
    """The draws ``low <= draw < high`` that pick a token after a context, by trigram text: for verify. A
    plain dict, as verify's hot path calls its ``get`` directly."""
    contexts: frozenset[tuple[str, str]]
    """The contexts in ``rows``, by text: a trigram of an unknown one falls back to the general view."""

    @classmethod
    def of(cls, rows: dict[int, DrawRow], names: Sequence[str]) -> View:
        size = len(names)
        spans: dict[Trigram, tuple[int, int]] = {}
        contexts = set()
        for key, (following, thresholds) in rows.items():
            first, second = names[key // size], names[key % size]
            contexts.add((first, second))
            for token, low, high in zip(following, (0, *thresholds), thresholds):
                spans[(first, second, names[token])] = (low, high)
        return cls(rows=MappingProxyType(rows), spans=spans, contexts=frozenset(contexts))


def _view(specific: Table, broad: Table, broad_rows: dict[int, DrawRow], names: Sequence[str]) -> View:
    rows = dict(broad_rows)
    for key, row in specific.items():
        other = broad.get(key)
        # A specific context the broad layer lacks cannot come from a well-formed model (a cell's lines are
        # its persona's); it is drawn from the specific row alone.
        rows[key] = _mixed_row(row, other) if other is not None else _draw_row(_counts(row))
    return View.of(rows, names)


@dataclass(frozen=True, slots=True)
class NgramBackend:
    """The ``ngram-v1`` model, loaded: trigram tables per cell, persona, mood and for everything, and one
    precomputed :class:`View` per (persona, mood), ``generic`` included."""

    vocabulary: tuple[str, ...]
    event_ids: Mapping[str, int]
    cell_tables: Mapping[tuple[str, str], Table]
    persona_tables: Mapping[str, Table]
    mood_tables: Mapping[str, Table]
    general_table: Table
    cell_short_lines: Mapping[tuple[str, str], tuple[str, ...]]
    views: Mapping[tuple[str, str], View]
    general_view: View
    names: tuple[str, ...]
    """Token texts by id as verify's trigram keys spell them (see ``_marker_names``)."""
    line_spans: dict[tuple[str, str, int, str], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    """Memo of :meth:`_line_spans` by (persona, mood, opener, line), for :meth:`is_sample`; bounded."""

    @classmethod
    def from_bytes(cls, blob: bytes) -> NgramBackend:
        model = msgspec.msgpack.decode(blob, type=ModelFile)
        if model.format != MODEL_FORMAT or model.model_id != NGRAM_MODEL_ID:
            raise ValueError(
                f"model file is {model.format}/{model.model_id}, expected {MODEL_FORMAT}/{NGRAM_MODEL_ID}"
            )
        size = len(model.vocabulary)
        by_cell = {(cell.persona, cell.mood): cell for cell in model.cells}
        cell_tables = {key: _tables([cell.trigrams], size) for key, cell in by_cell.items()}
        persona_tables = {p: _tables([by_cell[(p, m)].trigrams for m in MOODS], size) for p in PERSONAS}
        mood_tables = {m: _tables([by_cell[(p, m)].trigrams for p in PERSONAS], size) for m in MOODS}
        general_table = _tables([cell.trigrams for cell in model.cells], size)
        general_rows = {key: _draw_row(_counts(row)) for key, row in general_table.items()}
        names = _marker_names(model.vocabulary)
        views: dict[tuple[str, str], View] = {}
        for persona in PERSONAS:
            persona_rows = {key: _draw_row(_counts(row)) for key, row in persona_tables[persona].items()}
            for mood in MOODS:
                views[(persona, mood)] = _view(
                    cell_tables[(persona, mood)], persona_tables[persona], persona_rows, names
                )
        for mood in MOODS:
            views[(GENERIC_PERSONA, mood)] = _view(mood_tables[mood], general_table, general_rows, names)
        return cls(
            vocabulary=tuple(model.vocabulary),
            event_ids=MappingProxyType(
                {event: model.vocabulary.index(_event_token(event)) for event in EVENTS}
            ),
            cell_tables=MappingProxyType(cell_tables),
            persona_tables=MappingProxyType(persona_tables),
            mood_tables=MappingProxyType(mood_tables),
            general_table=general_table,
            cell_short_lines=MappingProxyType(
                {key: tuple(cell.short_lines) for key, cell in by_cell.items()}
            ),
            views=MappingProxyType(views),
            general_view=View.of(general_rows, names),
            names=names,
        )

    def _opening(self, events: Sequence[str], draw: int) -> int:
        """The second token of the opening context ``(<s>, ?)``: ``<s>`` or an event's marker."""
        if events and draw % EVENT_OPENING_ODDS != 0:
            return self.event_ids[_recent_event(events, draw // EVENT_OPENING_ODDS)]
        return _BOS_ID

    def sample_line(self, request: DialogueRequest, attempt: int) -> str | None:
        # Draw 0 picks the opening, draw i the i-th token; one more than max_words tokens can be drawn so
        # that a line of exactly max_words words still draws its end.
        draws = sample_draws(request.seed, attempt, request.max_words + 2)
        rows = self.views[(request.persona, request.mood)].rows
        general = self.general_view.rows
        vocabulary = self.vocabulary
        size = len(vocabulary)
        first, second = _BOS_ID, self._opening(request.events, draws[0])
        tokens: list[str] = []
        for draw in draws[1:]:
            key = first * size + second
            row = rows.get(key) or general.get(key)
            if row is None:  # every reachable context is in the general rows; this guards a bad file
                return None
            following, thresholds = row
            token = following[bisect_right(thresholds, draw)]
            if token == _EOS_ID:
                return " ".join(tokens) if tokens else None
            tokens.append(vocabulary[token])
            first, second = second, token
        return None  # still no end after max_words words

    def is_sample(self, request: DialogueRequest, attempt: int, line: str) -> bool:
        # The same answer as sample_line(request, attempt) == line at a fraction of its cost (verify calls it
        # for every output): the line gives every context, so each draw is only tested against the range
        # that picks its token; no row is searched and no string built.
        word_count = line.count(" ") + 1
        if word_count > request.max_words:
            return False
        draws = sample_draws(request.seed, attempt, word_count + 2)
        opener = self._opening(request.events, draws[0]) if request.events else _BOS_ID
        memo_key = (request.persona, request.mood, opener, line)
        spans = self.line_spans.get(memo_key)
        if spans is None:
            spans = self._line_spans(request, opener, line)
            if spans is None:
                return False
            # Lines recur (two in three are corpus lines verbatim), and looking a line's trigrams up, one
            # dict probe each across 24 views, is most of the cost; the memo makes a known line one probe.
            if len(self.line_spans) >= _LINE_MEMO_MAX:
                self.line_spans.clear()
            self.line_spans[memo_key] = spans
        for (low, high), draw in zip(spans, draws[1:]):  # noqa: SIM110  # a loop beats all(genexpr) here
            if not low <= draw < high:
                return False
        return True

    def _line_spans(
        self, request: DialogueRequest, opener: int, line: str
    ) -> tuple[tuple[int, int], ...] | None:
        """The draw range that picks each token of ``line`` (and its end) opened by ``opener``; None when
        the model cannot produce the line at all."""
        names = self.names
        sequence = [names[_BOS_ID], names[opener], *line.split(" "), names[_EOS_ID]]
        view = self.views[(request.persona, request.mood)]
        spans = list(map(view.spans.get, zip(sequence, sequence[1:], sequence[2:])))
        if None in spans:  # a context the view lacks (backoff to the general rows), or not a model line
            spans = [
                span or self._general_span(view, trigram)
                for span, trigram in zip(spans, zip(sequence, sequence[1:], sequence[2:]))
            ]
            if None in spans:
                return None
        return tuple(spans)  # type: ignore[arg-type]  # no None left

    def _general_span(self, view: View, trigram: Trigram) -> tuple[int, int] | None:
        if trigram[:2] in view.contexts:  # the view knows the context, and this token never follows it
            return None
        return self.general_view.spans.get(trigram)

    def short_lines(self, persona: str, mood: str) -> Sequence[str]:
        if persona == GENERIC_PERSONA:
            return sorted(
                {line for p in PERSONAS for line in self.cell_short_lines[(p, mood)]},
                key=lambda text: (text.count(" "), text),
            )
        return self.cell_short_lines[(persona, mood)]


def _recent_event(events: Sequence[str], draw: int) -> str:
    """One of ``events`` (oldest first), the i-th with weight i + 1: the latest one matters most."""
    picks = _RECENT_EVENT_PICKS[len(events)]
    return events[picks[draw % len(picks)]]


# By event count n (at most MAX_EVENTS, as Input allows), the event index each value of
# ``draw % (1 + 2 + ... + n)`` picks: index i for i + 1 of them, in order. A lookup rather than a walk, as
# verify opens every line it checks this way.
_RECENT_EVENT_PICKS = tuple(
    tuple(index for index in range(count) for _ in range(index + 1)) for count in range(MAX_EVENTS + 1)
)


@cache
def load_ngram_backend() -> NgramBackend:
    """The shipped ``ngram-v1`` model, loaded once per process."""
    return NgramBackend.from_bytes(data_file("model.msgpack"))


def _shipped() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class ModelBackend:
    """A model a task may name: how to load its backend, and whether this machine has it."""

    load: Callable[[], DialogueBackend]
    """Cached (called on every compute and verify)."""
    installed: Callable[[], bool] = _shipped
    """Cheap, without loading the model (called on every parse): whether this machine can run it, say
    because its weights are present. Peers advertise only installed models."""


# Model ids a task may name. A new id (say a larger model that some peers run locally) is added here with a
# cached loader returning a DialogueBackend and an ``installed`` check; ids must be valid in a feature name
# (letters, digits and ``_.:=+-``).
MODELS: Mapping[str, ModelBackend] = MappingProxyType({NGRAM_MODEL_ID: ModelBackend(load_ngram_backend)})


def _backend(model_id: str) -> DialogueBackend:
    return MODELS[model_id].load()


def model_feature(model_id: str) -> str:
    """The feature a peer advertises (within this kind) when it has ``model_id`` installed."""
    return f"model={model_id}"


def requirements(inp: Input) -> frozenset[str]:
    """Any peer of the kind runs the shipped model (peers that predate features too); another model needs
    a peer that has it installed."""
    return NO_FEATURES if inp.model == NGRAM_MODEL_ID else frozenset((model_feature(inp.model),))


def features() -> frozenset[str]:
    """The models beyond the shipped one that this machine can run, as features."""
    return frozenset(
        model_feature(model_id)
        for model_id, model in MODELS.items()
        if model_id != NGRAM_MODEL_ID and model.installed()
    )
