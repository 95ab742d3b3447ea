"""Plots: at most 8 PNGs, none wider than 2,000 px, a legend on every panel, spreads as bands or error bars;
what each plot draws, read back from the figure."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import matplotlib.figure
import pytest
from PIL import Image

from helpers import CPU, GPU, bench_result
from pipeline.results import plots
from pipeline.results.compare import comparison
from pipeline.results.format import normalize_row, unit_of
from pipeline.results.startup import STARTUP_FORMAT
from pipeline.results.tables import Rows


def row(suite, impl, metric, value, size=50, batch=32, *, device="cpu", backend="tensorflow", **keys):
    return normalize_row({"suite": suite, "impl": impl, "feed": keys.pop("feed", None), "size": size,
                          "batch_size": batch, "workers": keys.pop("workers", None), "metric": metric,
                          "value": value, "unit": unit_of(metric), "error": None, "device": device,
                          "backend": backend, "backend_version": "1", **keys})


def every_suite(devices=("cpu-a", "cpu-b")) -> list[dict]:
    """Rows of every suite on each of `devices`, each a little slower than the one before."""
    rows = []
    for k, device in enumerate(devices):
        slow = 1 + k
        for size in (32, 50, 100):
            for batch in (32, 256, 1024):
                ms = slow * size * batch / 500
                for feed in ("ours", "synthetic"):
                    rows += [row("train", "fast", m, v, size, batch, device=device, feed=feed, precision="float32")
                             for m, v in (("ms_per_step_median", ms), ("ms_per_step_p10", 0.9 * ms),
                                          ("ms_per_step_p90", 1.2 * ms))]
                for impl, readers in (("in-memory", None), ("ours", 1), ("ours", 2), ("ours-packed", 2)):
                    rate = 1e5 / slow / (readers or 3)
                    rows += [row("load", impl, m, v, size, batch, device=device, readers=readers, shuffle=True,
                                 front_end="tf.data", consumer="tf.function")
                             for m, v in (("samples_per_s", rate), ("samples_per_s_p10", 0.9 * rate),
                                          ("samples_per_s_p90", 1.1 * rate))]
                for demand in (0.5, 1.0):
                    rows += [row("au", impl, "au", value, size, batch, device=device, front_end="numpy",
                                 consumer="python", demand=demand)
                             for impl, value in (("ours-packed", 1.2 - demand / slow), ("synthetic", 1.0))]
            rows += [row("generate", "ours", "samples_per_s", 1e5 * w / slow, size, None, device=device, workers=w)
                     for w in (1, 2, 4)]
            rows.append(row("generate", "book", "samples_per_s", 300.0, size, None, device=device, workers=1))
        for n, efficiency in ((1, 1.0), (2, 0.9), (4, 0.8)):
            rate = n * 1000.0 * efficiency / slow
            rows += [row("train", "fast", m, v, device=device, feed="ours", precision="float32", devices=n)
                     for m, v in (("scaling_samples_per_s", rate), ("scaling_samples_per_s_p10", 0.9 * rate),
                                  ("scaling_samples_per_s_p90", 1.1 * rate), ("scaling_efficiency", efficiency))]
    return rows


def startup_doc() -> dict:
    rows = [{"samples": n, "shards": n // 2000, "variant": v, "mechanism": m, "open_s": t, "open_s_min": t * 0.9,
             "open_s_max": t * 1.1, "first_batch_s": 2 * t, "growth_mb": 300.0, "bound_mb": 600.0}
            for n in (10_000, 1_000_000) for v, m, t in (("index", "auto", 0.01), ("index", "graph", 0.02),
                                                         ("old", "auto", n / 1e5))]
    return {"format": STARTUP_FORMAT, "config": {"size": 50, "shard_size": 2000, "batch_size": 32}, "rows": rows}


def a_comparison():
    docs = [(Path(f"{i}.json"), bench_result(device, train=[(50, 32, [s * x for x in (0.9, 1.0, 1.1)])],
                                             load=[(50, 32, [r * x for x in (0.95, 1.0, 1.05)])]))
            for i, (device, s, r) in enumerate(((CPU, 40.0, 2e4), (GPU, 4.0, 4e5)))]
    return comparison([], docs)


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot saves, read back after it is saved."""
    saved = []
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, path, **kw):
        saved.append((Path(path), fig))
        return real(fig, path, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return saved


def test_every_plot_fits_2000_px_with_a_legend_on_every_panel(tmp_path, figures):
    rows = Rows(every_suite(devices=("cpu-a", "cpu-b", "cpu-c", "cpu-d", "cpu-e")))
    drawn = plots.draw_all(rows, a_comparison(), startup_doc(), tmp_path, "performance-")
    assert sorted(drawn) == ["au", "generate", "load", "relative", "scaling", "startup", "train"]
    assert len(list(tmp_path.glob("*.png"))) == len(drawn) <= 8
    for section, path in drawn.items():
        assert path.name == f"performance-{plots.PLOTS[section]}"
        width, height = Image.open(path).size
        assert 400 <= width <= plots.MAX_WIDTH_PX and height > 200, (path.name, width)
    assert {p for p, _ in figures} == set(drawn.values())
    for path, fig in figures:
        assert fig.axes, path
        for ax in fig.axes:
            assert ax.get_legend() is not None and ax.get_legend().get_texts(), (path.name, ax.get_title())


def test_load_panels_wrap_four_a_row(tmp_path, figures):
    plots.load_pipelines(Rows(every_suite()), tmp_path / "load.png")
    (_, fig), = figures
    rows = {round(ax.get_position().y0, 2) for ax in fig.axes}
    assert len(fig.axes) == 9 and len(rows) == 3  # 3 sizes x 3 batches: rows of 4, 4 and 1


@pytest.mark.filterwarnings("ignore:No artists with labels")  # Axes.bar is a mock: it draws nothing to label
def test_the_pipeline_bars_show_each_shuffled_pipeline_at_its_most_readers_with_error_bars(tmp_path):
    rows = Rows([r for r in every_suite(devices=("cpu-a",)) if r["suite"] == "load" and r["size"] == 50
                 and r["batch_size"] == 32]
                + [row("load", "ours", "samples_per_s", 9e9, device="cpu-a", readers=2, shuffle=False,
                       front_end="tf.data", consumer="tf.function")])
    with mock.patch("matplotlib.axes.Axes.bar", autospec=True) as bar:
        assert plots.load_pipelines(rows, tmp_path / "load.png") == tmp_path / "load.png"
    (call,) = bar.call_args_list
    heights = dict(zip(["in-memory", "ours", "ours-packed"], call.args[2]))
    assert heights == pytest.approx({"in-memory": 1e5 / 3 / 1e3, "ours": 1e5 / 2 / 1e3, "ours-packed": 1e5 / 2 / 1e3})
    below, above = call.kwargs["yerr"]
    assert below == pytest.approx([0.1 * h for h in call.args[2]]) and above == pytest.approx(below)
    assert call.kwargs["label"] == "cpu-a, tensorflow: tf.data/tf.function"
    assert plots.load_pipelines(Rows([r for r in rows.rows if r["suite"] != "load"]), tmp_path / "x.png") is None


def test_step_time_a_line_and_band_per_machine_model_and_feed_in_each_size_panel(tmp_path, figures):
    rows = Rows([r for r in every_suite() if r["suite"] == "train" and (r.get("devices") or 1) == 1])
    plots.train_steps(rows, tmp_path / "train.png")
    (_, fig), = figures
    assert [ax.get_title() for ax in fig.axes] == ["size 32", "size 50", "size 100"]
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2 * 2 and len(ax.collections) == 4  # machines x feeds, a band each
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "fast, ours", "fast, synthetic", "cpu-a, tensorflow", "cpu-b, tensorflow"]
    first = fig.axes[1].get_lines()[0]
    assert list(first.get_xdata()) == [32, 256, 1024] and first.get_ydata()[0] == pytest.approx(50 * 32 / 500)


def test_scaling_plots_efficiency_with_its_band_and_the_ideal(tmp_path, figures):
    rows = Rows([r for r in every_suite() if r["metric"].startswith("scaling")])
    plots.scaling(rows, tmp_path / "s.png")
    (_, fig), = figures
    (ax,) = fig.axes
    lines = [line for line in ax.get_lines() if line.get_label() != "ideal"]
    assert [list(line.get_ydata()) for line in lines] == [pytest.approx([1.0, 0.9, 0.8])] * 2
    assert len(ax.collections) == 2  # the bands


def test_au_ours_solid_and_the_synthetic_floor_dashed_against_demand(tmp_path):
    rows = Rows([r for r in every_suite(devices=("cpu-a",)) if r["suite"] == "au" and r["size"] == 50
                 and r["batch_size"] == 32])
    with mock.patch("matplotlib.axes.Axes.plot", autospec=True) as plot:
        plots.au(rows, tmp_path / "au.png")
    drawn = [(call.args[1], call.args[2], call.args[3]) for call in plot.call_args_list if len(call.args) > 3
             and call.args[1]]
    assert drawn == [((0.5, 1.0), pytest.approx((0.7, 0.2)), "-"), ((0.5, 1.0), (1.0, 1.0), "--")]


def test_relative_throughput_bars_are_the_comparisons_geomeans_and_ratios(tmp_path, figures):
    comp = a_comparison()
    plots.relative(comp, tmp_path / "relative.png")
    (_, fig), = figures
    geo_ax, cell_ax = fig.axes
    widths = [p.get_width() for p in geo_ax.patches]
    assert widths == pytest.approx([comp.geomean(m.id)[0] for m in comp.machines])
    ratios = sorted(p.get_width() for p in cell_ax.patches)
    expected = sorted(r for m in comp.machines for k in comp.cells if (r := comp.ratio(m.id, k)) is not None)
    assert ratios == pytest.approx(expected) and len(expected) == 2 * 2  # train and load, both machines


def test_a_spread_wholly_above_its_median_draws_a_bar_to_the_median():
    from types import SimpleNamespace

    from pipeline.results.format import HIGHER, LOWER

    above = SimpleNamespace(median=12.9, p10=13.3, p90=14.6, direction=HIGHER)
    assert plots._factors(above) == (1.0, pytest.approx(14.6 / 12.9))
    below = SimpleNamespace(median=10.0, p10=11.0, p90=12.0, direction=LOWER)
    assert plots._factors(below) == (pytest.approx(10 / 12), 1.0)
