"""Fixtures for the dataflow tests.

``ctx`` is parametrized over masters so the same behaviour tests run on every backend. Inline
contexts are made per test; a ``local[2]`` context (an embedded substrate cluster with two
executor processes) is shared by the whole session, one per memory budget, because starting
executors costs more than most tests.
"""
from __future__ import annotations

import pytest

from dataflow import Context

MASTERS = ["inline", "local[2]"]
SMALL_BUDGET = 32 * 1024


@pytest.fixture(scope="session")
def shared_contexts():
    made: dict = {}

    def get(master: str, memory_budget: int | None = None) -> Context:
        key = (master, memory_budget)
        if key not in made:
            kw = {} if memory_budget is None else {"memory_budget": memory_budget}
            made[key] = Context(master, appName=f"tests {master}", **kw)
        return made[key]

    yield get
    for c in made.values():
        c.stop()


@pytest.fixture(params=MASTERS)
def master(request: pytest.FixtureRequest) -> str:
    return request.param


def _context(master: str, shared_contexts, memory_budget: int | None = None):
    if master == "inline":
        kw = {} if memory_budget is None else {"memory_budget": memory_budget}
        with Context(master, **kw) as c:
            yield c
        return
    c = shared_contexts(master, memory_budget)
    yield c
    assert not c._stopped, "a test stopped the shared context"


@pytest.fixture
def ctx(master: str, shared_contexts):
    yield from _context(master, shared_contexts)


@pytest.fixture
def small_ctx(master: str, shared_contexts):
    """A context whose shuffles must spill: a 32 KiB merge budget."""
    yield from _context(master, shared_contexts, SMALL_BUDGET)


def inline_only(ctx: Context) -> None:
    """Skip a test that reaches into the inline backend's internals on other masters."""
    if ctx.master != "inline":
        pytest.skip("inspects the inline backend's executor state")
