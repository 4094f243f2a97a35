"""Train the ``ngram-v1`` model of ``ai_npc_dialogue`` from the shipped corpus.

    python scripts/train_dialogue.py           rewrite src/p2c2r/tasks/dialogue_data/model.msgpack
    python scripts/train_dialogue.py --check   exit 1 if the shipped model is not the corpus's training

Training is deterministic (the same corpus gives the same bytes), so the model file is commit-ready and a
test compares it with a fresh training of the corpus.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2c2r.tasks.dialogue import CorpusError, train_model

DATA_DIR = Path(__file__).resolve().parent.parent / "src" / "p2c2r" / "tasks" / "dialogue_data"
CORPUS_PATH = DATA_DIR / "corpus.txt"
MODEL_PATH = DATA_DIR / "model.msgpack"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare with the shipped model, write nothing")
    args = parser.parse_args(argv)
    try:
        model = train_model(CORPUS_PATH.read_text(encoding="utf-8"))
    except CorpusError as exc:
        print(f"corpus refused: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if MODEL_PATH.exists() and MODEL_PATH.read_bytes() == model:
            print(f"{MODEL_PATH.name} is up to date ({len(model)} bytes)")
            return 0
        print(f"{MODEL_PATH.name} is stale: run python scripts/train_dialogue.py", file=sys.stderr)
        return 1
    MODEL_PATH.write_bytes(model)
    print(f"wrote {MODEL_PATH} ({len(model)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
