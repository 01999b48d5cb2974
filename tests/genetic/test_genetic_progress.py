"""Live progress: the Jupyter widget (built and inspected without a frontend), the terminal
line on a captured stream, how the display is chosen, and the result's HTML chart and link."""
from __future__ import annotations

import io

import pytest

import genetic
from genetic import progress as gp

ONEMAX = genetic.Problem(genome=genetic.bits(32), fitness="onemax", maximize=True)


class Captured(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_widget_shows_status_and_chart_then_finalises():
    pytest.importorskip("ipywidgets")
    w = gp.WidgetProgress(50, interval=0.0, maximize=True, display=False)
    for g in range(1, 21):
        w.update(generation=g, best=float(g), mean=g / 2, evaluations=100 * g, running=2,
                 islands=2)
    assert w.bar.value == 20 and w.bar.max == 50
    assert "generation 20/50" in w.label.value and "best 20" in w.label.value
    assert w.chart.value.startswith("<svg") and w.chart.value.count("<polyline") == 2
    assert len(w.gens) == 20 and w.best[-1] == 20.0 and w.mean[-1] == 10.0
    w.close("target")
    assert w.closed and w.bar.bar_style == "success" and "(target)" in w.label.value
    w.update(generation=21, best=99.0, mean=1.0, evaluations=1, force=True)
    assert "best 99" not in w.label.value and len(w.gens) == 20     # closed: no more updates
    w.close("generations")                                           # idempotent
    assert "(target)" in w.label.value


def test_widget_failure_is_marked_and_long_runs_are_thinned():
    pytest.importorskip("ipywidgets")
    w = gp.WidgetProgress(10_000, interval=3600.0, display=False)
    for g in range(1, 5001):
        w.update(generation=g, best=1.0 / g, mean=2.0 / g, evaluations=g)
    assert len(w.gens) <= 2 * gp.MAX_POINTS and w.gens[-1] == 5000
    assert "generation 1</title>" in w.chart.value   # throttled: drawn once, at the start
    w.close("failed")
    assert w.bar.bar_style == "danger" and "generation 5000</title>" in w.chart.value


def test_text_line_on_a_captured_terminal():
    out = Captured(tty=True)
    t = gp.TextProgress(100, stream=out, interval=0.0)
    assert t.enabled
    t.update(generation=10, best=0.5, mean=2.0, evaluations=3000, running=1, islands=1)
    t.update(generation=20, best=0.25, mean=1.5, evaluations=6000, running=1, islands=1)
    t.close("stagnation")
    text = out.getvalue()
    assert text.count("\r[genetic] generation") >= 2
    assert "generation 20/100  best 0.25  mean 1.5" in text and "evaluations 6,000" in text
    assert text.endswith("(stagnation)\n")
    quiet = Captured(tty=False)
    t = gp.TextProgress(100, stream=quiet)
    t.update(generation=1, best=1.0, mean=1.0, evaluations=1, force=True)
    t.close("generations")
    assert quiet.getvalue() == ""


def test_resolve_follows_the_setting_and_the_environment(monkeypatch):
    assert gp.resolve(False, 10) is None
    assert gp.resolve(None, 10, env={gp.ENV_PROGRESS: "0"}) is None
    mine = gp.TextProgress(10, enabled=False)
    assert gp.resolve(mine, 10) is mine
    forced = gp.resolve(True, 10)
    assert isinstance(forced, gp.TextProgress) and forced.enabled
    assert not gp.in_jupyter()          # pytest is not a kernel


def test_inline_run_feeds_the_display_and_closes_it():
    out = Captured(tty=True)
    shown = gp.TextProgress(40, stream=out, interval=0.0)
    r = genetic.evolve(ONEMAX, population=40, generations=40, seed=3, progress=shown)
    assert shown.closed and shown.gens == list(range(1, 41))
    assert shown.best[-1] == max(r.history.column("best").to_pylist()[-1:])
    assert out.getvalue().endswith("\n")


def test_local2_run_feeds_the_widget():
    pytest.importorskip("ipywidgets")
    w = gp.WidgetProgress(30, interval=0.0, maximize=True, display=False)
    r = genetic.evolve(ONEMAX, population=60, generations=30, islands=2, seed=1,
                       master="local[2]", progress=w)
    assert w.closed and w.gens == list(range(1, 31))
    assert w.best[-1] == max(h for g, h in zip(r.history.column("generation").to_pylist(),
                                               r.history.column("best").to_pylist())
                             if g == 30)
    assert "(generations)" in w.label.value and w.chart.value.startswith("<svg")


def test_result_html_has_the_chart_and_an_escaped_dashboard_link():
    r = genetic.evolve(ONEMAX, population=30, generations=15, seed=2, progress=False)
    page = r._repr_html_()
    assert "<svg" in page and page.count("<polyline") == 2 and "maximised" in page
    assert "dashboard" not in page
    r.dashboard_url = 'http://127.0.0.1:5050/"><script>'
    page = r._repr_html_()
    assert "<script>" not in page and 'href="http://127.0.0.1:5050/&quot;&gt;&lt;script&gt;/state"' in page


def test_in_a_real_jupyter_kernel_it_is_a_widget():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import genetic\n"
            "p = genetic.Problem(genome=genetic.bits(16), fitness='onemax', maximize=True)\n"
            "r = genetic.evolve(p, population=20, generations=30, seed=1)"),
        nbformat.v4.new_code_cell("r"),
    ]
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    first = nb.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in first)
    assert not any(o.get("name") == "stderr" for o in first)     # no text line as well
    html = nb.cells[1].outputs[0]["data"]["text/html"]
    assert "genetic.Result" in html and "<svg" in html
