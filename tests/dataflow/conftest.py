"""Fixtures for the dataflow tests.

``ctx`` is parametrized over masters so the same behaviour tests run on every backend; only
``"inline"`` exists today, and ``"local[2]"`` joins the list when the substrate backend lands.
"""
from __future__ import annotations

import pytest

from dataflow import Context

MASTERS = ["inline"]


@pytest.fixture(params=MASTERS)
def master(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def ctx(master: str):
    with Context(master) as c:
        yield c


@pytest.fixture
def small_ctx(master: str):
    """A context whose shuffles must spill: a 32 KiB merge budget."""
    with Context(master, memory_budget=32 * 1024) as c:
        yield c


def inline_only(ctx: Context) -> None:
    """Skip a test that reaches into the inline backend's internals on other masters."""
    if ctx.master != "inline":
        pytest.skip("inspects the inline backend's executor state")
