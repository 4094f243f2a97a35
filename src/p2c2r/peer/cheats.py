"""``--cheat MODE``: a DEMONSTRATION AND TEST AID that makes a peer return bad results on purpose.

It exists so that users and tests can watch the coordinator catch cheaters ("testing validation", the
counterpart of the seed's "testing failover"). Every mode produces output of the right shape, as a
real cheater would, so that only the coordinator's checks stand between it and a game:

    random   plausible-looking garbage: right shape, random values
    stale    replays its previous answer for the same kind (an answer to another input)
    lazy     skips the work: no paths, bodies not moved, a flat image, a stock line
    subtle   does the work, then changes a little of it (one step, a few bodies, a patch of pixels, a word)
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import msgspec
import numpy as np

MODES = ("random", "stale", "lazy", "subtle")


class Cheater:
    def __init__(self, mode: str, seed: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown cheat mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode = mode
        self.rng = random.Random(seed)
        self._previous: dict[str, bytes] = {}

    def __call__(self, kind: str, task_input: Any, output: bytes) -> bytes:
        honest = msgspec.msgpack.decode(output)
        if self.mode == "stale":
            previous = self._previous.get(kind)
            self._previous[kind] = output
            return previous if previous is not None else output
        rewrite = getattr(self, f"_{self.mode}_{kind}", None)
        if rewrite is None:
            return output
        return msgspec.msgpack.encode(rewrite(task_input, honest))

    # random ---------------------------------------------------------------------------------------------

    def _random_ai_pathfinding(self, inp: Any, out: dict) -> dict:
        w, h = inp["width"], inp["height"]
        for path in out["paths"]:
            n = max(2, len(path["path"]))
            path["path"] = [[self.rng.randrange(w), self.rng.randrange(h)] for _ in range(n)]
            path["found"] = True
            path["cost"] = self.rng.uniform(1, w + h)
        return out

    def _random_rt_reflections(self, inp: Any, out: dict) -> dict:
        size = out["width"] * out["height"] * 3
        out["rgb_zlib"] = zlib.compress(self.rng.randbytes(size), 1)
        return out

    def _random_physics(self, inp: Any, out: dict) -> dict:
        for key in ("x", "y", "vx", "vy", "angle", "angular_velocity"):
            column = _column(out[key])
            noise = np.array([self.rng.uniform(-1, 1) for _ in range(len(column))])
            out[key] = _like(out[key], column + noise * (np.abs(column) + 1.0))
        return out

    def _random_ai_npc_dialogue(self, inp: Any, out: dict) -> dict:
        words = out["line"].split() or ["hold"]
        self.rng.shuffle(words)
        out["line"] = " ".join(words)
        return out

    # lazy -----------------------------------------------------------------------------------------------

    def _lazy_ai_pathfinding(self, inp: Any, out: dict) -> dict:
        for path in out["paths"]:
            path.update(found=False, path=[], cost=0.0)
        return out

    def _lazy_rt_reflections(self, inp: Any, out: dict) -> dict:
        background = inp.get("background", (0.05, 0.05, 0.08))
        pixel = bytes(int(round(min(1.0, max(0.0, c)) * 255)) for c in background)
        out["rgb_zlib"] = zlib.compress(pixel * (out["width"] * out["height"]), 1)
        return out

    def _lazy_physics(self, inp: Any, out: dict) -> dict:
        n = len(_column(out["x"]))
        for key in ("x", "y", "vx", "vy", "angle", "angular_velocity"):
            source = inp.get(key)
            out[key] = _like(out[key], _column(source) if source is not None else np.zeros(n))
        return out

    def _lazy_ai_npc_dialogue(self, inp: Any, out: dict) -> dict:
        out["line"] = "Stay sharp out there."
        out["words"] = 4
        return out

    # subtle ---------------------------------------------------------------------------------------------

    def _subtle_ai_pathfinding(self, inp: Any, out: dict) -> dict:
        # One waypoint left out (a corner cut short). Moving one sideways instead sometimes gave another
        # path of exactly the same length, which is no cheat at all; leaving one out always makes the path
        # broken or shorter than the cost it claims.
        candidates = [p for p in out["paths"] if p["found"] and len(p["path"]) >= 3]
        if candidates:
            path = self.rng.choice(candidates)["path"]
            del path[self.rng.randrange(1, len(path) - 1)]
        return out

    def _subtle_rt_reflections(self, inp: Any, out: dict) -> dict:
        w, h = out["width"], out["height"]
        image = np.frombuffer(zlib.decompress(out["rgb_zlib"]), dtype=np.uint8).reshape(h, w, 3).copy()
        ph, pw = max(1, h // 6), max(1, w // 6)
        y, x = self.rng.randrange(h - ph + 1), self.rng.randrange(w - pw + 1)
        image[y:y + ph, x:x + pw] = 255 - image[y:y + ph, x:x + pw]
        out["rgb_zlib"] = zlib.compress(image.tobytes(), 1)
        return out

    def _subtle_physics(self, inp: Any, out: dict) -> dict:
        x = _column(out["x"]).copy()
        n = len(x)
        for i in self.rng.sample(range(n), max(1, n // 20)):
            x[i] += 0.05 * (1.0 + abs(x[i]))
        out["x"] = _like(out["x"], x)
        return out

    def _subtle_ai_npc_dialogue(self, inp: Any, out: dict) -> dict:
        words = out["line"].split()
        if len(words) >= 2:
            i = self.rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
            if words == out["line"].split():
                words.append("indeed.")
        else:
            words.append("indeed.")
        out["line"] = " ".join(words)
        out["words"] = len(words)
        return out


def _column(value: Any) -> np.ndarray:
    if isinstance(value, (bytes, bytearray)):
        return np.frombuffer(value, dtype="<f8").astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def _like(template: Any, values: np.ndarray) -> Any:
    if isinstance(template, (bytes, bytearray)):
        return values.astype("<f8").tobytes()
    return values.tolist()


def make_tamperer(mode: str, seed: int | None = None) -> Cheater:
    return Cheater(mode, seed)
