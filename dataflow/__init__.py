"""dataflow: a PySpark-compatible RDD engine that runs as a framework on the substrate.

A PySpark RDD program runs after changing only how the context is made::

    from dataflow import Context
    ctx = Context("local[2]")        # or "local", "HOST:PORT" of a substrate master, "inline"

Examples
--------
>>> from operator import add
>>> with Context("inline") as ctx:
...     lines = ctx.parallelize(["to be or", "not to be"])
...     sorted(lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add).collect())
[('be', 2), ('not', 1), ('or', 1), ('to', 2)]
"""
from __future__ import annotations

from .accumulators import Accumulator, AccumulatorParam
from .broadcast import Broadcast
from .context import Context
from .errors import (
                     BackendUnavailableError,
                     ClosureCaptureError,
                     ContextStoppedError,
                     DataflowError,
                     FetchFailedError,
                     InputError,
                     JobError,
                     NotPairError,
                     OutputExistsError,
                     SerializationError,
                     TaskFailedError,
)
from .pairs import ResultIterable
from .partitioner import HashPartitioner, RangePartitioner, portable_hash
from .rdd import RDD
from .rdd_actions import StatCounter
from .shipping import SparkFiles
from .tasks import TaskContext

__all__ = [
                     "RDD",
                     "Accumulator",
                     "AccumulatorParam",
                     "BackendUnavailableError",
                     "Broadcast",
                     "ClosureCaptureError",
                     "Context",
                     "ContextStoppedError",
                     "DataflowError",
                     "FetchFailedError",
                     "HashPartitioner",
                     "InputError",
                     "JobError",
                     "NotPairError",
                     "OutputExistsError",
                     "RangePartitioner",
                     "ResultIterable",
                     "SerializationError",
                     "SparkFiles",
                     "StatCounter",
                     "TaskContext",
                     "TaskFailedError",
                     "portable_hash",
]
