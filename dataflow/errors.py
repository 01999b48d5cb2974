"""The dataflow exception tree.

Every error a user of :mod:`dataflow` can see derives from :class:`DataflowError`, so one
``except DataflowError`` catches them all. A failure inside user code on an executor is
reported as :class:`TaskFailedError`, which keeps the remote exception's type name, message
and traceback text, and names the stage and partition that failed. This module only defines
the classes; raising them is left to the modules that detect the conditions.

Examples
--------
>>> err = TaskFailedError("ValueError", "bad record", "Traceback ...", stage_id=3, partition=1)
>>> isinstance(err, DataflowError)
True
>>> print(str(err).splitlines()[0])
stage 3, partition 1 failed: ValueError: bad record
"""
from __future__ import annotations


class DataflowError(Exception):
    """Base class of every dataflow error."""


class BackendUnavailableError(DataflowError):
    """The requested master needs an execution backend that is not available."""


class SerializationError(DataflowError):
    """A closure, record or result could not be serialised."""


class ClosureCaptureError(SerializationError):
    """A closure captured an RDD or the Context, which only exist on the driver."""


class InputError(DataflowError):
    """An input path is missing or unreadable."""


class OutputExistsError(DataflowError):
    """An output directory exists and overwriting was not asked for."""


class NotPairError(DataflowError, TypeError):
    """A by-key operation met a record that is not a ``(key, value)`` pair."""


class ContextStoppedError(DataflowError):
    """The Context was stopped and cannot run jobs."""


class JobError(DataflowError):
    """A job failed; the message says why."""


class TaskFailedError(JobError):
    """User code raised inside a task.

    Attributes
    ----------
    remote_type : str
        Name of the exception type raised on the executor (e.g. ``"ZeroDivisionError"``).
    remote_message : str
        ``str()`` of that exception.
    remote_traceback : str
        The formatted traceback text from the executor.
    stage_id, partition, attempt : int
        Where it happened.
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str,
                 stage_id: int = -1, partition: int = -1, attempt: int = 0,
                 failures: int = 1) -> None:
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.stage_id = stage_id
        self.partition = partition
        self.attempt = attempt
        self.failures = failures
        super().__init__(
            f"stage {stage_id}, partition {partition} failed: {remote_type}: {remote_message}"
            f"\n(after {failures} attempt(s); remote traceback follows)\n{remote_traceback}"
        )

    def __reduce__(self):  # keep attributes through pickling
        return (TaskFailedError, (self.remote_type, self.remote_message, self.remote_traceback,
                                  self.stage_id, self.partition, self.attempt, self.failures))


class FetchFailedError(DataflowError):
    """A reducer could not fetch a map output; the scheduler recomputes it from lineage."""

    def __init__(self, shuffle_id: int, map_id: int, reduce_id: int, location: str,
                 reason: str = "") -> None:
        self.shuffle_id = shuffle_id
        self.map_id = map_id
        self.reduce_id = reduce_id
        self.location = location
        self.reason = reason
        super().__init__(f"fetch of shuffle {shuffle_id} map {map_id} reduce {reduce_id} "
                         f"from {location} failed: {reason}")

    def __reduce__(self):
        return (FetchFailedError, (self.shuffle_id, self.map_id, self.reduce_id,
                                   self.location, self.reason))
