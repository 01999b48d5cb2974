"""Reference twin of ``_native/words.pyx``: word counts in a dict keyed by the words' bytes.

Examples
--------
>>> c = WordCounter()
>>> c.add_block("b a\\tb\\n é ".encode()), c.add_block(b"x\\x1cy")
(True, False)
>>> c.add_words(["a"])
>>> c.items(), len(c)
([('b', 2), ('a', 2), ('é', 1)], 3)
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class WordCounter:
    """Counts of distinct words (UTF-8 bytes), in order of first occurrence."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()

    def add_block(self, block: bytes) -> bool:
        """Count the words of ``block`` (UTF-8 bytes split at ASCII whitespace) and return
        True; or return False, counting nothing, if it holds a byte ``0x1c``-``0x1f``."""
        if any(c in block for c in b"\x1c\x1d\x1e\x1f"):
            return False
        self._counts.update(block.split())  # bytes.split: ASCII whitespace only
        return True

    def add_words(self, words: Iterable[str]) -> None:
        """Count each ``str`` of ``words`` once."""
        self._counts.update(w.encode("utf-8", "surrogatepass") for w in words)

    def __len__(self) -> int:
        return len(self._counts)

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes (an estimate)."""
        return sum(len(w) for w in self._counts) + 120 * len(self._counts)

    def items(self) -> list:
        """``(word, count)`` pairs, words decoded, in order of first occurrence."""
        return [(w.decode("utf-8", "surrogatepass"), c) for w, c in self._counts.items()]
