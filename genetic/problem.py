"""Problem definitions: a genome space, a fitness (kernel name, vectorised or per-individual
function), directions, constraints, and what to do when a fitness evaluation fails.

This module validates a problem before any work starts and evaluates populations. Selection
and the loop live in :mod:`genetic.island`; the compiled kernels in ``_native/fitness.pyx``.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FitnessError, ProblemError
from .population import kernels
from .spaces import GenomeSpace

__all__ = ["KERNELS", "Evaluation", "Problem"]


@dataclass(frozen=True)
class _Kernel:
    kinds: tuple[str, ...]
    objectives: int
    maximize: bool
    min_genes: int = 1


#: Built-in fitness kernels: name -> genome kinds accepted, objectives, natural direction.
KERNELS: dict[str, _Kernel] = {
    "onemax": _Kernel(("bits",), 1, True),
    "leading_ones": _Kernel(("bits",), 1, True),
    "trap": _Kernel(("bits",), 1, True),
    "knapsack": _Kernel(("bits",), 1, True),
    "tsp": _Kernel(("permutation",), 1, False),
    "sphere": _Kernel(("reals",), 1, False),
    "rastrigin": _Kernel(("reals",), 1, False),
    "rosenbrock": _Kernel(("reals",), 1, False, 2),
    "ackley": _Kernel(("reals",), 1, False),
    "schwefel": _Kernel(("reals",), 1, False),
    "griewank": _Kernel(("reals",), 1, False),
    "zdt1": _Kernel(("reals",), 2, False, 2),
    "zdt2": _Kernel(("reals",), 2, False, 2),
    "zdt3": _Kernel(("reals",), 2, False, 2),
    "zdt4": _Kernel(("reals",), 2, False, 2),
    "zdt6": _Kernel(("reals",), 2, False, 2),
}


@dataclass
class Evaluation:
    """Result of evaluating some genomes: fitness rows, a viability mask, errors by row."""

    fitness: np.ndarray
    viable: np.ndarray
    violation: np.ndarray
    errors: dict[int, str]
    calls: int


class Problem:
    """What to optimise.

    Parameters
    ----------
    genome : GenomeSpace
        From :func:`genetic.bits`, :func:`genetic.reals`, :func:`genetic.integers` or
        :func:`genetic.permutation`.
    fitness : str or callable
        A built-in kernel name (see ``genetic.KERNELS``: ``"onemax"``, ``"rastrigin"``,
        ``"tsp"``, ``"zdt1"``, ...), or a Python function. A function is called once per
        individual with its genome (1-d array; bits as 0/1) and returns a number, or one number
        per objective; with ``vectorized=True`` it is called once with the whole population
        (2-d array, one row per individual) and returns ``(n,)`` or ``(n, objectives)``.
    maximize : bool or sequence of bool, optional
        Direction per objective. Kernels default to their natural direction (OneMax up,
        Rastrigin down, ZDT both down); a function needs it stated.
    objectives : int, optional
        Number of objectives of a function (default: ``len(maximize)`` or 1).
    constraints : callable, optional
        Vectorised: population in, violation amounts out, ``(n,)`` or ``(n, c)``; a positive
        amount is infeasible. Feasible individuals always rank above infeasible ones, and
        infeasible ones rank by total violation (Deb's rules).
    vectorized : bool
        Whether ``fitness`` takes the whole population.
    on_error : {"raise", "nonviable"}
        When the function raises or returns NaN: ``"raise"`` stops with :class:`FitnessError`
        (and a pre-flight check runs it on two random genomes before the run starts);
        ``"nonviable"`` marks the individual non-viable, records the error and goes on.
    **kernel_args
        Kernel parameters: ``k`` (trap, default 4); ``values``, ``weights``, ``capacity``,
        ``penalty`` (knapsack; penalty defaults to the largest value/weight ratio);
        ``distances`` (tsp, an ``(n, n)`` matrix).

    Examples
    --------
    >>> import genetic
    >>> p = genetic.Problem(genome=genetic.bits(100), fitness="onemax", maximize=True)
    >>> p.objectives, p.maximize
    (1, (True,))
    >>> q = genetic.Problem(genome=genetic.reals(-1, 1, 3), fitness=lambda x: float(x @ x),
    ...                     maximize=False)
    >>> q.evaluate(q.genome.encode([[0.5, 0.0, 0.0]])).fitness.tolist()
    [[0.25]]
    """

    def __init__(self, genome: GenomeSpace, fitness: str | Callable[..., Any], *,
                 maximize: bool | Sequence[bool] | None = None, objectives: int | None = None,
                 constraints: Callable[[np.ndarray], Any] | None = None,
                 vectorized: bool = False, on_error: str = "raise",
                 **kernel_args: Any) -> None:
        if not isinstance(genome, GenomeSpace):
            raise ProblemError(f"genome must be a genome space (genetic.bits(...), ...), "
                               f"got {genome!r}")
        if on_error not in ("raise", "nonviable"):
            raise ProblemError(f"on_error must be 'raise' or 'nonviable', got {on_error!r}")
        if constraints is not None and not callable(constraints):
            raise ProblemError("constraints must be a vectorised callable")
        self.genome = genome
        self.fitness = fitness
        self.constraints = constraints
        self.vectorized = bool(vectorized)
        self.on_error = on_error
        self.kernel_args: dict[str, Any] = {}
        self.kernel: str | None = None
        if isinstance(fitness, str):
            self._init_kernel(fitness, kernel_args, objectives)
            natural = KERNELS[fitness].maximize
            n_obj = KERNELS[fitness].objectives
            if maximize is None:
                maximize = natural
        elif callable(fitness):
            if kernel_args:
                raise ProblemError(f"unexpected arguments {sorted(kernel_args)} for a function "
                                   f"fitness (they are for built-in kernels)")
            if maximize is None:
                raise ProblemError("state the direction: maximize=True or maximize=False")
            n_obj = objectives or (len(maximize) if isinstance(maximize, (list, tuple)) else 1)
        else:
            raise ProblemError(f"fitness must be a kernel name or a callable, got {fitness!r}")
        if isinstance(maximize, (bool, np.bool_)):
            maximize = (bool(maximize),) * n_obj
        self.maximize: tuple[bool, ...] = tuple(bool(m) for m in maximize)
        if len(self.maximize) != n_obj:
            raise ProblemError(f"maximize has {len(self.maximize)} entries for {n_obj} "
                               f"objectives")
        self.objectives = n_obj
        #: +1 for maximised objectives, -1 for minimised: ``weights * fitness`` is "larger is
        #: better" everywhere inside the engine.
        self.weights = np.array([1.0 if m else -1.0 for m in self.maximize])

    # -- validation ---------------------------------------------------------------------------

    def _init_kernel(self, name: str, args: dict[str, Any], objectives: int | None) -> None:
        spec = KERNELS.get(name)
        if spec is None:
            raise ProblemError(f"unknown fitness kernel {name!r}; built-in kernels: "
                               f"{', '.join(sorted(KERNELS))}")
        space = self.genome
        if space.kind not in spec.kinds:
            raise ProblemError(f"kernel {name!r} needs a {' or '.join(spec.kinds)} genome, "
                               f"not {space.kind}")
        if space.n_genes < spec.min_genes:
            raise ProblemError(f"kernel {name!r} needs at least {spec.min_genes} genes")
        if objectives not in (None, spec.objectives):
            raise ProblemError(f"kernel {name!r} has {spec.objectives} objective(s)")
        if self.vectorized:
            raise ProblemError("vectorized=True is for functions; kernels are always vectorised")
        n = space.n_genes
        allowed: set[str] = set()
        if name == "trap":
            allowed = {"k"}
            k = int(args.get("k", 4))
            if k < 1 or n % k:
                raise ProblemError(f"trap: genome length {n} is not a multiple of k={k}")
            self.kernel_args["k"] = k
        elif name == "knapsack":
            allowed = {"values", "weights", "capacity", "penalty"}
            try:
                values = np.ascontiguousarray(args["values"], dtype=np.float64)
                weights = np.ascontiguousarray(args["weights"], dtype=np.float64)
                capacity = float(args["capacity"])
            except KeyError as exc:
                raise ProblemError(f"knapsack needs values, weights and capacity "
                                   f"(missing {exc.args[0]})") from None
            if values.shape != (n,) or weights.shape != (n,):
                raise ProblemError(f"knapsack: values and weights need {n} entries")
            if (weights < 0).any() or not np.isfinite(values).all():
                raise ProblemError("knapsack: weights must be >= 0 and values finite")
            ratio = values / np.where(weights > 0, weights, np.inf)
            penalty = float(args.get("penalty", max(float(ratio.max(initial=0.0)), 1.0)))
            self.kernel_args.update(values=values, weights=weights, capacity=capacity,
                                    penalty=penalty)
        elif name == "tsp":
            allowed = {"distances"}
            if "distances" not in args:
                raise ProblemError("tsp needs distances=<(n, n) matrix>")
            dist = np.ascontiguousarray(args["distances"], dtype=np.float64)
            if dist.shape != (n, n):
                raise ProblemError(f"tsp: distances must be ({n}, {n}), got {dist.shape}")
            if not np.isfinite(dist).all():
                raise ProblemError("tsp: distances must be finite")
            self.kernel_args["distances"] = dist
        extra = set(args) - allowed
        if extra:
            raise ProblemError(f"unexpected arguments {sorted(extra)} for kernel {name!r}")
        self.kernel = name

    def preflight(self, rng: np.random.Generator) -> None:
        """Evaluate two random genomes so that a broken fitness fails before the run starts.

        Wrong shapes always raise; exceptions and NaN raise only with ``on_error="raise"``.
        """
        self.evaluate(self.genome.random(rng, 2))

    # -- evaluation ---------------------------------------------------------------------------

    def _kernel_values(self, rows: np.ndarray) -> np.ndarray:
        fit = kernels("fitness")
        name, a, n = self.kernel, self.kernel_args, self.genome.n_genes
        if name == "onemax":
            return fit.onemax(rows)[:, None]
        if name == "leading_ones":
            return fit.leading_ones(rows, n)[:, None]
        if name == "trap":
            return fit.trap(rows, n, a["k"])[:, None]
        if name == "knapsack":
            return fit.knapsack(rows, n, a["values"], a["weights"], a["capacity"],
                                a["penalty"])[:, None]
        if name == "tsp":
            return fit.tsp_length(rows, a["distances"])[:, None]
        out = getattr(fit, name)(rows)
        return out if out.ndim == 2 else out[:, None]

    def _fail(self, message: str) -> FitnessError:
        return FitnessError(message)

    def _shape(self, values: Any, n: int) -> np.ndarray:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"fitness returned non-numeric values ({exc})") from None
        m = self.objectives
        if arr.shape == (n,) and m == 1:
            return arr[:, None]
        if arr.shape != (n, m):
            raise self._fail(f"vectorised fitness must return shape ({n},) or ({n}, {m}) "
                             f"for {n} genomes and {m} objective(s), got {arr.shape}")
        return arr

    def evaluate(self, rows: np.ndarray) -> Evaluation:
        """Evaluate stored genome rows (the space's layout); never raises for NaN or a failing
        per-individual call when ``on_error="nonviable"``."""
        n = rows.shape[0]
        m = self.objectives
        errors: dict[int, str] = {}
        if n == 0:
            return Evaluation(np.empty((0, m)), np.ones(0, bool), np.zeros(0), errors, 0)
        if self.kernel is not None:
            fitness = self._kernel_values(rows)
        elif self.vectorized:
            decoded = self.genome.decode(rows)
            try:
                values = self.fitness(decoded)  # type: ignore[operator]
            except Exception as exc:
                if self.on_error == "raise":
                    raise FitnessError(f"fitness raised {type(exc).__name__}: {exc}") from exc
                text = _error_text(exc)
                fitness = np.full((n, m), np.nan)
                errors = {i: text for i in range(n)}
            else:
                fitness = self._shape(values, n)
        else:
            fitness = self._per_individual(rows, errors)
        if np.isfinite(fitness).all():
            viable = np.ones(n, dtype=bool)
        else:
            bad = ~np.isfinite(fitness).all(axis=1)
            viable = ~bad
            first = int(np.flatnonzero(bad)[0])
            if self.on_error == "raise" and first not in errors:
                raise FitnessError(f"fitness returned {fitness[first].tolist()} (not finite) "
                                   f"for genome {self.genome.decode(rows[first:first + 1])[0]}")
            for i in np.flatnonzero(bad):
                errors.setdefault(int(i), "fitness is not finite")
        violation = self._violation(rows)
        calls = 1 if (self.kernel is not None or self.vectorized) else n
        return Evaluation(fitness, viable, violation, errors, calls)

    def _per_individual(self, rows: np.ndarray, errors: dict[int, str]) -> np.ndarray:
        n, m = rows.shape[0], self.objectives
        decoded = self.genome.decode(rows)
        out = np.empty((n, m))
        fn: Callable[[np.ndarray], Any] = self.fitness  # type: ignore[assignment]
        for i in range(n):
            try:
                value = fn(decoded[i])
            except Exception as exc:
                if self.on_error == "raise":
                    raise FitnessError(f"fitness raised {type(exc).__name__}: {exc} "
                                       f"(genome {decoded[i]})") from exc
                errors[i] = _error_text(exc)
                out[i] = np.nan
                continue
            try:
                arr = np.asarray(value, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise self._fail(f"fitness returned {value!r}, not a number") from None
            if arr.size != m:
                raise self._fail(f"fitness returned {arr.size} value(s) for {m} objective(s)")
            out[i] = arr
        return out

    def _violation(self, rows: np.ndarray) -> np.ndarray:
        n = rows.shape[0]
        if self.constraints is None:
            return np.zeros(n)
        try:
            v = np.asarray(self.constraints(self.genome.decode(rows)), dtype=np.float64)
        except Exception as exc:
            raise FitnessError(f"constraints raised {type(exc).__name__}: {exc}") from exc
        if v.ndim == 1 and v.shape[0] == n:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] != n:
            raise FitnessError(f"constraints must return shape ({n},) or ({n}, c), got {v.shape}")
        if np.isnan(v).any():
            raise FitnessError("constraints returned NaN")
        return np.maximum(v, 0.0).sum(axis=1)

    # -- checkpoints --------------------------------------------------------------------------

    def signature(self) -> dict[str, Any]:
        """A JSON summary used to refuse resuming a checkpoint of a different problem."""
        return {"genome": self.genome.to_json(), "objectives": self.objectives,
                "maximize": list(self.maximize),
                "fitness": self.kernel or getattr(self.fitness, "__qualname__", "function")}

    def __repr__(self) -> str:
        what = self.kernel or getattr(self.fitness, "__name__", "function")
        return (f"Problem(genome={self.genome!r}, fitness={what!r}, "
                f"maximize={self.maximize if self.objectives > 1 else self.maximize[0]})")


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
