"""The training corpus: Python's documentation topics (``pydoc_data.topics``), as characters.

Every CPython install has it (about 465,000 characters). The topics are joined in sorted key order;
the last ``valid_fraction`` of the text is the validation split. The character set is every
character seen at least ``min_count`` times in the training split, plus one unknown token
(U+FFFD) for the rest; token ids follow the set's sorted order, unknown first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Corpus", "UNKNOWN", "load_corpus"]

UNKNOWN = "\ufffd"


@dataclass(frozen=True)
class Corpus:
    """Encoded train and validation splits and the character set that maps ids to characters."""

    charset: str
    train: np.ndarray
    valid: np.ndarray

    @property
    def vocab(self) -> int:
        return len(self.charset)

    def encode(self, text: str) -> np.ndarray:
        """Return the token ids of ``text``; characters outside the set become the unknown id."""
        return encode(self.charset, text)

    def decode(self, ids) -> str:
        return decode(self.charset, ids)


def encode(charset: str, text: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(charset)}
    unknown = index.get(UNKNOWN, 0)
    return np.fromiter((index.get(c, unknown) for c in text), dtype=np.int64, count=len(text))


def decode(charset: str, ids) -> str:
    return "".join(charset[int(i)] for i in ids)


def load_corpus(*, valid_fraction: float = 0.1, min_count: int = 10) -> Corpus:
    """Return the pydoc corpus split into train and validation, encoded."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), not {valid_fraction!r}")
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    cut = int(len(text) * (1 - valid_fraction))
    train_text, valid_text = text[:cut], text[cut:]
    counts: dict[str, int] = {}
    for c in train_text:
        counts[c] = counts.get(c, 0) + 1
    charset = UNKNOWN + "".join(sorted(c for c, n in counts.items() if n >= min_count
                                       and c != UNKNOWN))
    return Corpus(charset, encode(charset, train_text), encode(charset, valid_text))


def batches(ids: np.ndarray, *, batch: int, context: int, rng: np.random.Generator):
    """Yield forever ``(x, y)`` int64 arrays (batch, context): windows and their next tokens."""
    if len(ids) <= context + 1:
        raise ValueError(f"the split has {len(ids)} tokens, too few for context {context}")
    while True:
        start = rng.integers(0, len(ids) - context - 1, size=batch)
        idx = start[:, None] + np.arange(context + 1)[None, :]
        win = ids[idx]
        yield win[:, :-1], win[:, 1:]
