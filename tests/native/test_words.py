"""Tests of the ``words`` kernel family (word counts on UTF-8 bytes): compiled and twin."""
from __future__ import annotations

from collections import Counter
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _native import PURE_ENV, compiled_available, load, pure_forced

pytestmark = pytest.mark.timeout(60)

BACKENDS = [pytest.param(True, id="twin"), pytest.param(False, id="compiled")]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def backend(pure: bool) -> ModuleType:
    if not pure and pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    return load("words", pure=pure)


def test_compiled_module_built():
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    assert compiled_available("words"), "run: python setup.py build_ext --inplace"


# words from a small alphabet (repeats), ASCII whitespace, non-ASCII letters
TEXT = st.text(alphabet=st.sampled_from(list("ab é\t\n\r\x0b\x0c漢  ")), max_size=200)


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(blocks=st.lists(TEXT, max_size=6), extra=st.lists(st.sampled_from(["a", "é", "zz"])))
def test_counts_are_str_split_counts_in_first_occurrence_order(pure, blocks, extra):
    c = backend(pure).WordCounter()
    ref: Counter = Counter()
    for b in blocks:
        assert c.add_block(b.encode()) is True
        ref.update(b.split())
    c.add_words(extra)
    ref.update(extra)
    assert c.items() == list(ref.items())  # same order: first occurrence
    assert len(c) == len(ref) and c.nbytes >= 0


@pytest.mark.parametrize("pure", BACKENDS)
def test_blocks_with_unicode_only_separators_are_refused_whole(pure):
    c = backend(pure).WordCounter()
    assert c.add_block(b"a b\x1fc") is False
    assert c.items() == []


def test_many_distinct_words_grow_the_table():
    c = load("words", pure=pure_forced()).WordCounter()
    words = [f"w{i}" for i in range(50_000)]
    c.add_block(" ".join(words + words[:10]).encode())
    got = c.items()
    assert len(got) == 50_000 and got[:2] == [("w0", 2), ("w1", 2)] and got[-1] == ("w49999", 1)
