"""Word counts of text files without a Python object per word.

``textFile(...).flatMap(str.split).map(lambda w: (w, c)).reduceByKey(add)`` -- the word count --
spends its time making one ``str`` and one tuple per word and combining them one by one. When
the plan has exactly that shape (a text split, ``str.split`` itself, a map the analyser reads
as ``(w, c)`` with an int ``c``, a combine by ``add``), the map side counts the words of each
block of the file's bytes with ``_native.words.WordCounter`` and makes one ``str`` per distinct
word. :class:`TextBlocks` and :class:`Words` are those partitions; their :meth:`records` are the
records of the general path, for any other consumer.

Same results as the general path: the bytes are decoded first where they are not ASCII (so bad
UTF-8 raises the same ``UnicodeDecodeError``), UTF-8 bytes split at ASCII whitespace give
``str.split``'s words unless the text holds a character only Unicode counts as whitespace
(then that block's words come from ``str.split``), counts are ``n * c``, and words come out in
order of first occurrence, as the general path's dict keeps them.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "t.txt")
>>> _ = open(path, "w").write("to be or\\nnot to be\\n")
>>> words = Words(TextBlocks((path, 0, -1, True)))
>>> list(words.records())
['to', 'be', 'or', 'not', 'to', 'be']
>>> list(count_words(Words(TextBlocks((path, 0, -1, True))), 1 << 20))
[[('to', 2), ('be', 2), ('or', 1), ('not', 1)]]
"""
from __future__ import annotations

import functools
import itertools
import re
import sys
from collections.abc import Iterator
from typing import Any

from _native import load as _load_kernel

from .batches import Part

_words = _load_kernel("words")


@functools.cache
def _unicode_space() -> re.Pattern:
    """The characters ``str.split`` splits at besides ASCII whitespace."""
    chars = [chr(i) for i in range(sys.maxunicode + 1)
             if chr(i).isspace() and chr(i) not in " \t\n\r\x0b\x0c"]
    return re.compile("[" + re.escape("".join(chars)) + "]")


class TextBlocks(Part):
    """The lines of one text split (``textFile``), which may be read as blocks of bytes."""

    def __init__(self, desc: tuple) -> None:
        self.desc = desc

    def records(self) -> Iterator:
        from .io import read_text_split
        return iter(read_text_split(self.desc))

    def blocks(self) -> Iterator[bytes]:
        from .io import raw_blocks
        path, start, end, _unicode = self.desc
        return raw_blocks(path, start, end)


def text_blocks(desc: Any) -> TextBlocks | None:
    """A :class:`TextBlocks` for a split descriptor the block reader can serve, else None."""
    if isinstance(desc, tuple) and len(desc) == 4 and desc[3] is True \
            and isinstance(desc[0], str) and not desc[0].endswith(".gz"):
        return TextBlocks(desc)
    return None


class Words(Part):
    """``flatMap(str.split)`` of a :class:`TextBlocks`."""

    def __init__(self, text: TextBlocks) -> None:
        self.text = text

    def records(self) -> Iterator:
        return itertools.chain.from_iterable(map(str.split, self.text.records()))


def count_words(words: Words, budget: int) -> Iterator[list]:
    """``(word, count)`` lists, one per batch of distinct words held within ``budget`` bytes."""
    counter = _words.WordCounter()
    for block in words.text.blocks():
        if block.isascii():
            text = None
            # the kernel refuses (counting nothing) a block with \x1c-\x1f, which str.split
            # splits at and bytes do not
            plain = counter.add_block(block)
        else:
            text = block.decode("utf-8")
            plain = _unicode_space().search(text) is None and counter.add_block(block)
        if not plain:
            counter.add_words((text if text is not None else block.decode("ascii")).split())
        if counter.nbytes > budget:  # emit partial counts, keep memory bounded
            yield counter.items()
            counter = _words.WordCounter()
    if len(counter):
        yield counter.items()
