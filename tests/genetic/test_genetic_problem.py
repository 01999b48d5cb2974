"""Problem definitions and bad input: clear errors before any work starts, or non-viable
individuals with recorded errors when the user asks for that."""
from __future__ import annotations

import numpy as np
import pytest

import genetic
from genetic import ConfigError, FitnessError, ProblemError


def test_spaces():
    assert genetic.bits(100).width == 2
    r = genetic.reals([-1, 0, 2], [1, 1, 3])
    assert r.n_genes == 3 and r.low.tolist() == [-1, 0, 2]
    g = r.random(np.random.default_rng(0), 500)
    assert ((g >= r.low) & (g <= r.high)).all()
    i = genetic.integers(0, 3, 5)
    gi = i.random(np.random.default_rng(0), 500)
    assert gi.min() == 0 and gi.max() == 3
    b = genetic.bits(70)
    raw = b.random(np.random.default_rng(0), 50)
    assert (raw[:, 1] >> np.uint64(6) == 0).all(), "padding bits are zero"
    assert (b.encode(b.decode(raw)) == raw).all()


@pytest.mark.parametrize("make,match", [
    (lambda: genetic.reals(1.0, 0.0, 3), "low > high in dimension 0"),
    (lambda: genetic.reals([0, 5], [1, 4]), "low > high in dimension 1"),
    (lambda: genetic.reals([0, 0], [1, 1, 1]), "different lengths"),
    (lambda: genetic.reals(0, 1), "give dim"),
    (lambda: genetic.reals(0, np.inf, 2), "finite"),
    (lambda: genetic.integers(5, 1, 2), "low > high"),
    (lambda: genetic.integers(0.5, 1, 2), "whole numbers"),
    (lambda: genetic.bits(0), "positive integer"),
    (lambda: genetic.permutation(1), "n >= 2"),
])
def test_bad_spaces(make, match):
    with pytest.raises(ProblemError, match=match):
        make()


@pytest.mark.parametrize("kwargs,match", [
    (dict(genome=genetic.reals(0, 1, 5), fitness="onemax"), "needs a bits genome"),
    (dict(genome=genetic.bits(10), fitness="rastrigin"), "needs a reals genome"),
    (dict(genome=genetic.bits(10), fitness="tsp"), "needs a permutation genome"),
    (dict(genome=genetic.permutation(5), fitness="tsp"), "tsp needs distances"),
    (dict(genome=genetic.permutation(5), fitness="tsp", distances=np.ones((4, 4))),
     r"must be \(5, 5\)"),
    (dict(genome=genetic.bits(10), fitness="trap", k=4), "not a multiple of k=4"),
    (dict(genome=genetic.bits(3), fitness="knapsack", values=[1, 2, 3]), "missing weights"),
    (dict(genome=genetic.bits(10), fitness="nosuch"), "unknown fitness kernel"),
    (dict(genome=genetic.reals(0, 1, 1), fitness="zdt1"), "at least 2 genes"),
    (dict(genome=genetic.bits(10), fitness="onemax", k=3), "unexpected arguments"),
    (dict(genome=genetic.bits(10), fitness=lambda g: 1.0), "state the direction"),
    (dict(genome="bits", fitness="onemax"), "genome must be a genome space"),
    (dict(genome=genetic.bits(10), fitness=42), "kernel name or a callable"),
    (dict(genome=genetic.bits(10), fitness="onemax", on_error="ignore"), "on_error"),
    (dict(genome=genetic.reals(0, 1, 3), fitness="zdt1", maximize=[False]), "2 objectives"),
])
def test_bad_problems(kwargs, match):
    with pytest.raises(ProblemError, match=match):
        genetic.Problem(**kwargs)


def test_kernel_directions():
    assert genetic.Problem(genome=genetic.bits(5), fitness="onemax").maximize == (True,)
    assert genetic.Problem(genome=genetic.reals(0, 1, 3), fitness="sphere").maximize == (False,)
    z = genetic.Problem(genome=genetic.reals(0, 1, 3), fitness="zdt2")
    assert z.objectives == 2 and z.maximize == (False, False)


ONEMAX = genetic.Problem(genome=genetic.bits(20), fitness="onemax")


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(population=2, selection=genetic.Tournament(3)), ConfigError, "smaller than the"),
    (dict(population=6, islands=4), ConfigError, "too small for 4 islands"),
    (dict(population=0), ConfigError, "population must be a positive integer"),
    (dict(topology="star"), ConfigError, "topology"),
    (dict(scheme="steady"), ConfigError, "scheme"),
    (dict(crossover=genetic.SBX()), ProblemError, "SBX crossover does not apply to bits"),
    (dict(mutation=genetic.Swap()), ProblemError, "Swap mutation does not apply"),
    (dict(elitism=50, population=50), ConfigError, "elitism"),
    (dict(checkpoint_every=5), ConfigError, "needs checkpoint"),
    (dict(scheme="mu_plus_lambda", crossover=genetic.TwoPoint(0.8),
          mutation=genetic.BitFlip(0.5)), ConfigError, "<= 1"),
    (dict(max_evaluations=-1), ConfigError, "max_evaluations"),
    (dict(master="zk://zk1:2181"), ConfigError, "zk://HOST:PORT"),
    (dict(master="nonsense master"), ConfigError, "master must be"),
])
def test_bad_evolve_settings(kwargs, err, match):
    with pytest.raises(err, match=match):
        genetic.evolve(ONEMAX, **kwargs)


def test_roulette_needs_maximised_fitness():
    p = genetic.Problem(genome=genetic.reals(0, 1, 3), fitness="sphere")
    with pytest.raises(ConfigError, match="maximised"):
        genetic.evolve(p, selection=genetic.Roulette())


def test_multiobjective_needs_nsga2():
    p = genetic.Problem(genome=genetic.reals(0, 1, 3), fitness="zdt1")
    with pytest.raises(ConfigError, match="nsga2"):
        genetic.evolve(p, scheme="generational")


# -- failing fitness functions -------------------------------------------------------------------

def raising(genome):
    raise RuntimeError("boom")


def sometimes(genome):
    if genome[0] == 1 and genome[1] == 1:
        raise RuntimeError("bad genome")
    return float(genome.sum())


def test_raising_function_fails_before_the_run():
    calls = []

    def f(g):
        calls.append(1)
        return raising(g)

    p = genetic.Problem(genome=genetic.bits(8), fitness=f, maximize=True)
    with pytest.raises(FitnessError, match="RuntimeError: boom"):
        genetic.evolve(p, population=20, generations=5)
    assert len(calls) == 1, "the pre-flight check stops at the first failure"


@pytest.mark.parametrize("value,match", [
    (float("nan"), "not finite"),
    ("abc", "not a number"),
    ((1.0, 2.0), "2 value"),
])
def test_bad_return_values(value, match):
    p = genetic.Problem(genome=genetic.bits(8), fitness=lambda g: value, maximize=True)
    with pytest.raises(FitnessError, match=match):
        genetic.evolve(p, population=20, generations=5)


def test_vectorised_wrong_shape_and_raise():
    p = genetic.Problem(genome=genetic.reals(0, 1, 3), fitness=lambda x: x.sum(),
                        maximize=True, vectorized=True)
    with pytest.raises(FitnessError, match=r"shape \(2,\)"):
        genetic.evolve(p, population=20, generations=5)
    q = genetic.Problem(genome=genetic.reals(0, 1, 3), fitness=lambda x: x.sum(),
                        maximize=True, vectorized=True, on_error="nonviable")
    with pytest.raises(FitnessError, match="shape"):
        genetic.evolve(q, population=20, generations=5)


def test_nonviable_mode_records_and_continues():
    p = genetic.Problem(genome=genetic.bits(8), fitness=sometimes, maximize=True,
                        on_error="nonviable")
    r = genetic.evolve(p, population=40, generations=15, seed=3)
    assert r.generations == 15
    assert r.error_count > 0 and r.errors
    e = r.errors[0]
    assert "RuntimeError: bad genome" in e["error"] and {"island", "generation", "hash"} <= set(e)
    assert r.best.fitness == 7.0   # 0b1111_1110-like genomes; the all-ones one raises
    assert not (r.best.genome[0] == 1 and r.best.genome[1] == 1)


def test_nan_nonviable_mode():
    def f(g):
        return float("nan") if g.sum() == 0 else float(g.sum())

    p = genetic.Problem(genome=genetic.bits(4), fitness=f, maximize=True, on_error="nonviable")
    ev = p.evaluate(p.genome.encode(np.array([[0, 0, 0, 0], [1, 0, 1, 0]])))
    assert ev.viable.tolist() == [False, True] and "not finite" in ev.errors[0]


def test_vectorised_raise_nonviable_marks_batch():
    def f(x):
        raise ValueError("vector boom")

    p = genetic.Problem(genome=genetic.reals(0, 1, 2), fitness=f, maximize=True,
                        vectorized=True, on_error="nonviable")
    ev = p.evaluate(np.zeros((3, 2)))
    assert not ev.viable.any() and "vector boom" in ev.errors[2]


def test_constraints_errors():
    p = genetic.Problem(genome=genetic.reals(0, 1, 2), fitness="sphere",
                        constraints=lambda x: np.ones(1))
    with pytest.raises(FitnessError, match="constraints must return shape"):
        genetic.evolve(p, population=10, generations=2)
