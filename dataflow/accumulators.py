"""Accumulators: variables that tasks can only add to and the driver can read.

On the driver an :class:`Accumulator` holds the running value. Pickled into a task it becomes a
task-local copy starting from the parameter's zero, registered with the running
:class:`~dataflow.tasks.TaskContext`; the task's updates travel back in its result and the
driver merges each successful task's update once (see :mod:`dataflow.dag`). Reading
``value`` inside a task is an error, as in PySpark.

Examples
--------
>>> from dataflow import Context
>>> with Context("inline") as ctx:
...     acc = ctx.accumulator(0)
...     ctx.parallelize(range(10), 3).foreach(lambda x: acc.add(x))
...     acc.value
45
>>> param = AddingAccumulatorParam(0.0)
>>> param.addInPlace(param.zero(3.5), 1.5)
1.5
"""
from __future__ import annotations

from typing import Any, Self

from .errors import DataflowError


class AccumulatorParam:
    """How to make a zero value and add two values (PySpark's ``AccumulatorParam``)."""

    def zero(self, value: Any) -> Any:
        raise NotImplementedError

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        raise NotImplementedError


class AddingAccumulatorParam(AccumulatorParam):
    """Numbers: zero is ``zero_value``, adding is ``+=``."""

    def __init__(self, zero_value: Any) -> None:
        self.zero_value = zero_value

    def zero(self, value: Any) -> Any:
        return self.zero_value

    def addInPlace(self, value1: Any, value2: Any) -> Any:
        value1 += value2
        return value1


INT_ACCUMULATOR_PARAM = AddingAccumulatorParam(0)
FLOAT_ACCUMULATOR_PARAM = AddingAccumulatorParam(0.0)
COMPLEX_ACCUMULATOR_PARAM = AddingAccumulatorParam(0.0j)


def default_param(value: Any) -> AccumulatorParam:
    if isinstance(value, bool) or not isinstance(value, (int, float, complex)):
        raise TypeError(f"no default AccumulatorParam for {type(value).__name__}; "
                        f"pass accum_param")
    if isinstance(value, int):
        return INT_ACCUMULATOR_PARAM
    if isinstance(value, float):
        return FLOAT_ACCUMULATOR_PARAM
    return COMPLEX_ACCUMULATOR_PARAM


class Accumulator:
    """A shared, add-only variable. Use ``acc.add(x)`` or ``acc += x`` in tasks."""

    def __init__(self, aid: int, value: Any, accum_param: AccumulatorParam,
                 on_driver: bool = True) -> None:
        self.aid = aid
        self.accum_param = accum_param
        self._value = value
        self._on_driver = on_driver

    @property
    def value(self) -> Any:
        """The merged value (driver only)."""
        if not self._on_driver:
            raise DataflowError("Accumulator.value cannot be accessed inside tasks")
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        if not self._on_driver:
            raise DataflowError("Accumulator.value cannot be accessed inside tasks")
        self._value = value

    def add(self, term: Any) -> None:
        """Add ``term`` to this accumulator."""
        self._value = self.accum_param.addInPlace(self._value, term)

    def __iadd__(self, term: Any) -> Self:
        self.add(term)
        return self

    def __reduce__(self) -> tuple:
        return (_task_accumulator, (self.aid, self.accum_param.zero(self._value), self.accum_param))

    def __repr__(self) -> str:
        return f"Accumulator<id={self.aid}, value={self._value!r}>"


def _task_accumulator(aid: int, zero: Any, param: AccumulatorParam) -> Accumulator:
    from .tasks import TaskContext
    tc: TaskContext | None = TaskContext.get()
    if tc is not None and aid in tc.accumulators:
        return tc.accumulators[aid]
    acc = Accumulator(aid, zero, param, on_driver=False)
    if tc is not None:
        tc.accumulators[aid] = acc
    return acc
