"""The genetic package's exception tree.

Every error the engine raises on purpose derives from :class:`GeneticError`; errors about the
user's input also derive from :class:`ValueError` so ordinary ``except ValueError`` handling
keeps working.
"""
from __future__ import annotations


class GeneticError(Exception):
    """Base class of every error raised by :mod:`genetic`."""


class ProblemError(GeneticError, ValueError):
    """The problem definition is inconsistent (genome/kernel mismatch, bad bounds, ...)."""


class ConfigError(GeneticError, ValueError):
    """The evolve() settings are inconsistent (population smaller than the tournament, ...)."""


class FitnessError(GeneticError):
    """The fitness function raised, returned the wrong shape, or returned NaN."""


class CheckpointError(GeneticError):
    """A checkpoint could not be written, read, or does not match the problem."""


class DistributedUnavailable(GeneticError, NotImplementedError):
    """A master form frameworks cannot reach (kept for compatibility; ``"zk://..."`` works)."""
