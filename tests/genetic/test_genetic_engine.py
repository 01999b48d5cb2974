"""evolve(): convergence within stated budgets, reproducibility, migration, stopping rules,
schemes, multi-objective, permutations, constraints, the Result object."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import genetic

ONEMAX = genetic.Problem(genome=genetic.bits(100), fitness="onemax", maximize=True)
RASTRIGIN = genetic.Problem(genome=genetic.reals(-5.12, 5.12, 30), fitness="rastrigin")


def strip_seconds(table: pa.Table) -> dict:
    d = table.to_pydict()
    d.pop("seconds")
    return d


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_onemax_100_solved(seed):
    # DEAP's canonical settings (the defaults for bits): solved within 100 generations
    r = genetic.evolve(ONEMAX, population=300, generations=100, seed=seed, target=100)
    assert r.best.fitness == 100.0 and r.stopped == "target"
    assert r.best.genome.tolist() == [1] * 100
    assert r.generations < 100


def test_rastrigin_30_below_10_in_200_generations():
    r = genetic.evolve(RASTRIGIN, population=300, generations=200, seed=1)
    assert r.best.fitness < 10.0
    assert RASTRIGIN.genome.low[0] <= r.best.genome.min() <= r.best.genome.max() <= 5.12
    # the history's best column is consistent with the result
    assert min(r.history.column("best").to_pylist()) == pytest.approx(r.best.fitness)


def test_history_schema_and_rows():
    r = genetic.evolve(ONEMAX, population=60, generations=7, islands=3, seed=3)
    h = r.history
    assert h.column_names == ["generation", "island", "best", "mean", "std", "diversity",
                              "evaluations", "seconds"]
    assert h.num_rows == 21
    assert sorted(set(h.column("island").to_pylist())) == [0, 1, 2]
    assert h.column("generation").to_pylist()[:3] == [1, 1, 1]
    div = np.array(h.column("diversity").to_pylist())
    assert ((div > 0) & (div <= 1)).all()
    ev = np.array(h.column("evaluations").to_pylist()).reshape(7, 3)
    assert (np.diff(ev, axis=0) >= 0).all()
    assert r.evaluations == ev[-1].sum()


@pytest.mark.parametrize("topology", ["ring", "random", "complete"])
def test_reproducible_with_migration(topology):
    kw = dict(population=120, generations=25, islands=2 if topology == "ring" else 3, seed=11,
              migration_interval=5, migrants=3, topology=topology)
    a = genetic.evolve(ONEMAX, **kw)
    b = genetic.evolve(ONEMAX, **kw)
    assert strip_seconds(a.history) == strip_seconds(b.history)
    assert a.best.genome.tolist() == b.best.genome.tolist()
    assert a.best.fitness == b.best.fitness
    c = genetic.evolve(ONEMAX, **dict(kw, seed=12))
    assert strip_seconds(a.history) != strip_seconds(c.history)


def test_reproducible_reals_and_permutations():
    for problem in (RASTRIGIN, genetic.Problem(genome=genetic.permutation(10), fitness="tsp",
                                               distances=np.random.default_rng(0).random((10, 10)))):
        a = genetic.evolve(problem, population=40, generations=10, islands=2, seed=5,
                           migration_interval=3)
        b = genetic.evolve(problem, population=40, generations=10, islands=2, seed=5,
                           migration_interval=3)
        assert strip_seconds(a.history) == strip_seconds(b.history)


def test_migration_spreads_the_best():
    # one island is given a much better individual; with migration, it reaches the other
    island_cfg = genetic.Settings(size=20, selection=genetic.Tournament(3),
                                  crossover=genetic.TwoPoint(0.0), mutation=genetic.BitFlip(0.0))
    a = genetic.Island(ONEMAX, island_cfg, 0, 1)
    b = genetic.Island(ONEMAX, island_cfg, 1, 2)
    a.pop.genomes[0] = [2**64 - 1, 2**36 - 1]
    a.pop.fitness[0] = 100.0
    a._after_change()
    before = b.pop.fitness.max()
    b.import_migrants(a.export_migrants(2))
    assert b.pop.fitness.max() == 100.0 > before
    assert b.pop.n == 20


def test_stopping_rules():
    r = genetic.evolve(ONEMAX, population=100, generations=1000, seed=1, max_evaluations=2000)
    assert r.stopped == "evaluations" and 2000 <= r.evaluations < 2000 + 100
    r = genetic.evolve(ONEMAX, population=100, generations=1000, seed=1, stagnation=5)
    assert r.stopped == "stagnation"
    best = np.array(r.history.column("best").to_pylist())
    assert (best[-5:] <= best[:-5].max()).all()
    r = genetic.evolve(ONEMAX, population=100, generations=100000, seed=1, max_seconds=0.05)
    assert r.stopped == "seconds" and r.generations < 100000
    r = genetic.evolve(RASTRIGIN, population=100, generations=500, seed=1, target=50.0)
    assert r.stopped == "target" and r.best.fitness <= 50.0
    r = genetic.evolve(ONEMAX, population=50, generations=3, seed=1)
    assert r.stopped == "generations" and r.generations == 3


def test_mu_plus_lambda_and_elitism():
    r = genetic.evolve(ONEMAX, population=100, generations=40, seed=1,
                       scheme="mu_plus_lambda", offspring=150, selection=genetic.Truncation(),
                       crossover=genetic.TwoPoint(0.6), mutation=genetic.BitFlip(0.3, 0.02))
    best = np.array(r.history.column("best").to_pylist())
    assert (np.diff(best) >= 0).all(), "(mu + lambda) with truncation never loses the best"
    assert best[-1] >= 90
    r = genetic.evolve(ONEMAX, population=100, generations=30, seed=2, elitism=2)
    best = np.array(r.history.column("best").to_pylist())
    assert (np.diff(best) >= 0).all(), "elitism never loses the best"


def test_roulette_and_sus_run():
    for sel in (genetic.Roulette(), genetic.SUS()):
        r = genetic.evolve(ONEMAX, population=100, generations=20, seed=1, selection=sel)
        best = r.history.column("best").to_pylist()
        assert best[-1] > best[0]


def test_nsga2_zdt1_front():
    p = genetic.Problem(genome=genetic.reals(0, 1, 30), fitness="zdt1")
    r = genetic.evolve(p, population=100, generations=150, seed=1)
    front = r.pareto_front
    assert front is not None and len(front) >= 50
    f = front.fitness
    # close to the true front f2 = 1 - sqrt(f1), and spread over f1 in [0, 1]
    assert np.abs(f[:, 1] - (1 - np.sqrt(f[:, 0]))).mean() < 0.05
    assert f[:, 0].min() < 0.05 and f[:, 0].max() > 0.9
    assert isinstance(r.best.fitness, tuple) and len(r.best.fitness) == 2
    assert front.to_arrow().column_names == ["genome", "f0", "f1"]


def test_tsp_circle_solved():
    n = 12
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.c_[np.cos(ang), np.sin(ang)]
    dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    p = genetic.Problem(genome=genetic.permutation(n), fitness="tsp", distances=dist)
    optimum = n * 2 * np.sin(np.pi / n)
    for cx, mut in ((genetic.PMX(0.7), genetic.Swap(0.2, 0.05)),
                    (genetic.OX(0.9), genetic.Inversion(0.3))):
        r = genetic.evolve(p, population=200, generations=150, seed=1, crossover=cx,
                           mutation=mut)
        assert r.best.fitness == pytest.approx(optimum)
        assert sorted(r.best.genome.tolist()) == list(range(n))


def test_constraints_and_knapsack():
    rng = np.random.default_rng(0)
    values, weights = rng.integers(1, 20, 30).astype(float), rng.integers(1, 20, 30).astype(float)
    cap = weights.sum() / 3
    kp = genetic.Problem(genome=genetic.bits(30), fitness="knapsack", values=values,
                         weights=weights, capacity=cap)
    r = genetic.evolve(kp, population=100, generations=60, seed=1)
    assert (r.best.genome * weights).sum() <= cap + 1e-9
    # the same problem with the capacity as an explicit constraint on a vectorised value
    cp = genetic.Problem(genome=genetic.bits(30), fitness=lambda g: g @ values, maximize=True,
                         vectorized=True, constraints=lambda g: g @ weights - cap)
    r2 = genetic.evolve(cp, population=100, generations=60, seed=1)
    assert (r2.best.genome * weights).sum() <= cap + 1e-9
    assert r2.best.fitness >= 0.9 * r.best.fitness


def test_integers_genome():
    p = genetic.Problem(genome=genetic.integers(-10, 10, 8),
                        fitness=lambda x: -np.abs(x - 3).sum(axis=1), maximize=True,
                        vectorized=True)
    r = genetic.evolve(p, population=100, generations=120, seed=1)
    assert r.best.fitness == 0.0 and r.best.genome.tolist() == [3] * 8


def test_per_individual_function_with_dedup():
    calls = []

    def f(genome):
        calls.append(1)
        return float(genome.sum())

    p = genetic.Problem(genome=genetic.bits(20), fitness=f, maximize=True)
    r = genetic.evolve(p, population=40, generations=30, seed=1)
    assert r.best.fitness == 20.0
    # preflight (2 calls) + evaluations; dedup skips genomes seen before
    assert len(calls) == r.evaluations + 2
    assert r.evaluations < 40 * 31


def test_result_presentation():
    r = genetic.evolve(ONEMAX, population=40, generations=5, seed=1, hall_of_fame=5)
    html = r._repr_html_()
    assert "genetic.Result" in html and "best fitness" in html
    assert "Result(best=" in repr(r)
    assert len(r.hall_of_fame) == 5
    fits = [i.fitness for i in r.hall_of_fame]
    assert fits == sorted(fits, reverse=True) and fits[0] == r.best.fitness
    hashes = {tuple(i.genome.tolist()) for i in r.hall_of_fame}
    assert len(hashes) == 5, "hall of fame holds distinct genomes"


def test_plot_if_matplotlib():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    r = genetic.evolve(ONEMAX, population=40, generations=5, islands=2, seed=1)
    ax = r.plot()
    assert len(ax.get_lines()) == 4


def test_dedup_memory_is_bounded():
    p = genetic.Problem(genome=genetic.bits(16), fitness=lambda g: float(g.sum()),
                        maximize=True)
    settings = genetic.Settings(size=30, selection=genetic.Tournament(3),
                                crossover=genetic.TwoPoint(0.9), mutation=genetic.BitFlip(1.0, 0.2),
                                dedup=True, dedup_memory=40)
    isl = genetic.Island(p, settings, 0, 1)
    for _ in range(20):
        isl.step(1)
        assert len(isl._cache) <= 40
    # cached genomes are not evaluated again: fewer evaluations than offspring produced
    assert isl.evaluations < 30 * 21
