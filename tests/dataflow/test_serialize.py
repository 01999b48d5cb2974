"""Closure serialisation: C pickle first, dill per function, dill for the rest."""
from __future__ import annotations

import operator

import pytest

from dataflow import ClosureCaptureError, SerializationError
from dataflow.serialize import dumps, loads


def test_module_functions_and_data_use_plain_pickle():
    blob = dumps([operator.add, len, {"a": (1, 2.5, None)}])
    assert blob[:1] == b"P"
    assert loads(blob) == [operator.add, len, {"a": (1, 2.5, None)}]


def test_lambdas_and_closures_round_trip_and_are_cached():
    k = 10

    def outer(x):
        return x + k

    f = lambda x: outer(x) * 2
    cache: dict = {}
    blob = dumps({"f": f, "g": [f]}, cache=cache)
    assert blob[:1] == b"P" and len(cache) == 1
    back = loads(blob)
    assert back["f"](1) == 22 and back["g"][0](2) == 24
    again = dumps(f, cache=cache)
    assert loads(again)(0) == 20 and len(cache) == 1


def test_locally_defined_class_goes_through_dill():
    class Point:
        def __init__(self, x):
            self.x = x

    back = loads(dumps(Point(3)))
    assert back.x == 3


def test_captured_rdd_or_context_anywhere_in_a_closure(ctx):
    rdd = ctx.parallelize([1])
    holder = {"r": [rdd]}
    with pytest.raises(ClosureCaptureError, match="RDD"):
        dumps(lambda x: holder["r"][0])
    with pytest.raises(ClosureCaptureError, match="Context"):
        def inner():
            return ctx

        dumps(lambda x: inner())
    with pytest.raises(ClosureCaptureError):
        dumps(rdd)


def test_unserialisable_names_the_object():
    gen = (i for i in range(2))
    with pytest.raises(SerializationError, match="the function given to map"):
        dumps(lambda x: next(gen), "the function given to map")
    with pytest.raises(SerializationError, match="unknown serialisation tag"):
        loads(b"Xjunk")
