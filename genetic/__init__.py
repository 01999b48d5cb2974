"""genetic: an Exelixi-style genetic-algorithm engine with whole-population array operators and
Cython fitness kernels.

A population is a few arrays (packed ``uint64`` bit rows, ``float64`` rows, ``int32``
permutation rows, a fitness matrix, 64-bit genome hashes), never per-individual objects.
Operators follow DEAP's definitions with their rates stated explicitly. Islands evolve as pure
objects (:class:`genetic.island.Island`); :func:`evolve` runs them in-process
(``master="inline"``) with synchronous migration, or hosts each in a long-running executor on
the substrate (``master="local[N]"`` or ``"HOST:PORT"``, see :mod:`genetic.framework`).

Examples
--------
>>> import genetic
>>> problem = genetic.Problem(genome=genetic.bits(100), fitness="onemax", maximize=True)
>>> result = genetic.evolve(problem, population=300, generations=100, islands=2, seed=1)
>>> result.best.fitness
100.0
>>> result.history.column_names
['generation', 'island', 'best', 'mean', 'std', 'diversity', 'evaluations', 'seconds']
"""
from __future__ import annotations

from .crossover import OX, PMX, SBX, Blend, Crossover, OnePoint, TwoPoint, Uniform
from .engine import TOPOLOGIES, default_operators, evolve
from .errors import (CheckpointError, ConfigError, DistributedUnavailable, FitnessError,
                     GeneticError, ProblemError)
from .island import Island, Settings
from .mutation import BitFlip, Gaussian, Inversion, Mutation, Polynomial, Swap, UniformInt
from .problem import KERNELS, Problem
from .result import Individual, ParetoFront, Result
from .selection import SUS, Roulette, Selection, Tournament, Truncation
from .spaces import GenomeSpace, bits, integers, permutation, reals

__all__ = [
    "Problem", "evolve", "Result", "Individual", "ParetoFront", "KERNELS", "TOPOLOGIES",
    "bits", "reals", "integers", "permutation", "GenomeSpace",
    "Selection", "Tournament", "Truncation", "Roulette", "SUS",
    "Crossover", "OnePoint", "TwoPoint", "Uniform", "SBX", "Blend", "OX", "PMX",
    "Mutation", "BitFlip", "Gaussian", "Polynomial", "UniformInt", "Swap", "Inversion",
    "Island", "Settings", "default_operators",
    "GeneticError", "ProblemError", "ConfigError", "FitnessError", "CheckpointError",
    "DistributedUnavailable",
]
