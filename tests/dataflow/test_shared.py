"""Broadcast variables and accumulators."""
from __future__ import annotations

import pytest

from dataflow import AccumulatorParam, DataflowError, TaskFailedError


def test_broadcast_value_in_tasks(ctx):
    table = {i: i * i for i in range(100)}
    b = ctx.broadcast(table)
    assert b.value is table
    got = ctx.parallelize(range(100), 4).map(lambda x: b.value[x]).collect()
    assert got == [i * i for i in range(100)]
    b.unpersist()
    assert ctx.parallelize([3]).map(lambda x: b.value[x]).collect() == [9]
    b.destroy()
    with pytest.raises(TaskFailedError, match="destroyed"):
        ctx.parallelize([3]).map(lambda x: b.value[x]).collect()


def test_accumulators_int_float_and_custom(ctx):
    ia = ctx.accumulator(0)
    fa = ctx.accumulator(0.5)

    def f(x):
        ia.add(x)
        fa.add(0.25)
        return x

    ctx.parallelize(range(10), 3).map(f).count()
    assert ia.value == 45 and fa.value == 0.5 + 2.5

    class ListParam(AccumulatorParam):
        def zero(self, value):
            return []

        def addInPlace(self, a, b):
            a.extend(b if isinstance(b, list) else [b])
            return a

    la = ctx.accumulator([], ListParam())

    def g(x):
        la.add(x)

    ctx.parallelize(range(5), 2).foreach(g)
    assert sorted(la.value) == [0, 1, 2, 3, 4]
    ia.value = 1
    assert ia.value == 1
    with pytest.raises(TypeError):
        ctx.accumulator("text")


def test_accumulator_iadd(ctx):
    acc = ctx.accumulator(0)

    def f(x):
        nonlocal_acc = acc
        nonlocal_acc += x

    ctx.parallelize([1, 2, 3]).foreach(f)
    assert acc.value == 6


def test_failed_task_updates_are_not_applied(ctx):
    acc = ctx.accumulator(0)

    def f(x):
        acc.add(1)
        if x == 3:
            raise ValueError("no")
        return x

    # One partition: its task adds 1 for 0, 1 and 2, then fails on 3 (every attempt).
    with pytest.raises(TaskFailedError):
        ctx.parallelize(range(4), 1).map(f).collect()
    assert acc.value == 0  # none of the failed attempts' updates counted
    ctx.parallelize(range(3), 2).map(f).collect()
    assert acc.value == 3  # a successful job's updates are
    assert isinstance(DataflowError("x"), Exception)
