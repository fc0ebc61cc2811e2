"""Figures: the seed's panels from stored rows, pixel-identical to a live analysis, the same
bytes every time, manifests rebuilt whole, and clear errors for what is not in the store."""

from __future__ import annotations

import json

import matplotlib as mpl
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from attnstore import plots
from attnstore.cli import cli
from attnstore.connection import connect
from attnstore.errors import ConfigError, NotFoundError
from attnstore.pipeline import head_figure_data_live
from attnstore.store import Store
from attnstore.vocab import EFFECT_METRICS, HEAD_METRICS
from tests.conftest import TINY, TINY_SAMPLES

LAYER, HEAD, SAMPLE = 1, 0, 7


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def raw_data(tiny_analysed_store):
    path, run_id, ids = tiny_analysed_store
    return plots.head_figure_data(path, run_id, ids["raw"], LAYER, HEAD, SAMPLE)


def _panels(fig):
    return {ax.get_label(): ax for ax in fig.axes}


def _hidden(labels) -> bool:
    return all(not t.get_visible() for t in labels)


def test_head_figure_has_the_seeds_panels(raw_data):
    fig = plots.head_figure(raw_data)
    assert (
        fig._suptitle.get_text().splitlines()[0] == f"layer {LAYER}, head {HEAD}, sample {SAMPLE}"
    )
    assert tuple(fig.get_size_inches()) == (15, 8)
    panels = _panels(fig)
    # the seed's ten images (gs[0, 0:2] stay empty), the attention's colour bar, the legend
    assert len(fig.axes) == len(panels) == 12
    gs = fig.axes[0].get_subplotspec().get_gridspec()
    assert gs.get_geometry() == (3, 4) and gs.get_width_ratios() == [0.25, 0.25, 1, 1]
    # the seed's margins (top 0.95, bottom 0.05) clipped the axis labels and a second title line
    assert (gs.wspace, gs.hspace, gs.top, gs.bottom, gs.left, gs.right) == (
        0.04,
        0.04,
        0.88,
        0.09,
        0.17,
        0.845,
    )
    a, N = raw_data.attention, raw_data.n_points
    lit, ys = raw_data.x >= 0, np.tile(raw_data.y, (20, 1))
    # label: (cell, image data, cmap, clim, xlabel, ylabel)
    k_x, k_y = raw_data.queries["x"].best_k, raw_data.queries["y"].best_k
    expected = {
        "attention x→x": ((1, 2), a[::2, ::2], "Purples", (0, 1), "", ""),
        "attention x→y": ((1, 3), a[::2, 1::2], "Purples", (0, 1), "", ""),
        "attention y→x": ((2, 2), a[1::2, ::2], "Purples", (0, 1), "x key", ""),
        "attention y→y": ((2, 3), a[1::2, 1::2], "Purples", (0, 1), "y key", ""),
        "clusters x": ((1, 1), None, "viridis", (0, max(k_x - 1, 1)), "", ""),
        "clusters y": ((2, 1), None, "viridis", (0, max(k_y - 1, 1)), "", ""),
        "literals x query": ((1, 0), lit, "viridis", (0, 1), "", "x query"),
        "labels y query": ((2, 0), ys.T, "bwr", (-1, 1), "", "y query"),
        "literals x key": ((0, 2), lit.T, "viridis", (0, 1), "", ""),
        "labels y key": ((0, 3), ys, "bwr", (-1, 1), "", ""),
    }
    assert set(panels) == set(expected) | {"colour bar", "legend"}
    for name, (cell, data, cmap, clim, xlabel, ylabel) in expected.items():
        ax = panels[name]
        spec = ax.get_subplotspec()
        assert (spec.rowspan.start, spec.colspan.start) == cell, name
        (im,) = ax.get_images()
        assert im.get_cmap().name == cmap and im.get_clim() == clim, name
        if data is not None:
            np.testing.assert_array_equal(im.get_array(), data, err_msg=name)
        assert ax.get_xlabel() == xlabel and ax.get_ylabel() == ylabel, name
        assert _hidden(ax.get_xticklabels()) == (not xlabel), name
        assert _hidden(ax.get_yticklabels()) == (not ylabel and name != "literals x key"), name
        assert not any(g.get_visible() for g in ax.get_xgridlines()), name
    for kind in ("x", "y"):
        strip = panels[f"clusters {kind}"].get_images()[0].get_array()
        assert strip.shape == (N, 10) and not np.ma.getmaskarray(strip).any()
        np.testing.assert_array_equal(strip[:, 0], raw_data.queries[kind].labels)


def _literal_text(rows, sign_column="sign") -> list[str]:
    """The signed literals of function rows (nonzero weights), in order of input."""
    rows = sorted((r for r in rows if r["weight"] != 0), key=lambda r: r["literal"])
    return [("" if r[sign_column] > 0 else "¬") + f"x{r['literal']}" for r in rows]


def test_the_head_figure_reads_its_target_legend_and_colour_bar(raw_data, tiny_analysed_store):
    """Everything drawn is named: the hidden function (read from the store) under the title,
    which colour is +1 and -1 and each cluster, the attention's scale."""
    path, run_id, _ = tiny_analysed_store
    rows = Store(path).read("functions", run_id=run_id, sample=SAMPLE).to_pylist()
    target = " ∧ ".join(_literal_text(rows)) or "⊤"  # a conjunction; empty: always true
    assert raw_data.hidden_function == target
    fig = plots.head_figure(raw_data)
    assert fig._suptitle.get_text() == (
        f"layer {LAYER}, head {HEAD}, sample {SAMPLE}\ntarget: {target}"
    )
    panels = _panels(fig)
    bar = panels["colour bar"]
    assert bar.get_ylabel() == "attention weight"
    (mappable,) = panels["attention y→y"].get_images()
    assert mappable.colorbar.ax is bar and mappable.get_clim() == (0, 1)
    assert mappable.get_cmap().name == "Purples"
    legends = {
        lg.get_title().get_text(): {
            t.get_text(): h.get_facecolor()
            for t, h in zip(lg.get_texts(), lg.legend_handles, strict=True)
        }
        for lg in panels["legend"].artists
    }
    k = {kind: raw_data.queries[kind].best_k for kind in ("x", "y")}
    assert list(legends) == ["inputs", "labels"] + [
        f"clusters of {kind} queries (k = {k[kind]})" for kind in ("x", "y")
    ]  # the raw view clusters every row: no "not clustered"
    viridis, bwr = mpl.colormaps["viridis"], mpl.colormaps["bwr"]
    assert legends["inputs"] == {"x_j = +1": viridis(1.0), "x_j = −1": viridis(0.0)}
    assert legends["labels"] == {"y = +1": bwr(1.0), "y = −1": bwr(0.0)}
    for kind in ("x", "y"):
        strip = panels[f"clusters {kind}"].get_images()[0]
        swatches = legends[f"clusters of {kind} queries (k = {k[kind]})"]
        assert list(swatches) == [str(c) for c in range(k[kind])]
        for c, colour in swatches.items():  # the colour the strip draws label c in
            assert colour == strip.cmap(strip.norm(int(c)))


def _written_out(task: str, rows: list[dict]) -> str | None:
    """The hidden function of one sample's functions rows, written as the query writes it."""
    terms = {}
    for r in rows:
        terms.setdefault(r["term"], []).append(r)
    lits = {t: _literal_text(rs) for t, rs in sorted(terms.items())}
    if task == "disjunction":
        return " ∨ ".join(lits[0]) or "⊥"
    if task in ("dnf", "cnf"):
        inner, outer, empty = (" ∧ ", " ∨ ", "⊤") if task == "dnf" else (" ∨ ", " ∧ ", "⊥")
        return outer.join(
            f"({inner.join(t)})" if len(t) > 1 else (t[0] if t else empty) for t in lits.values()
        )
    if task == "int_halfspace":
        summands = sorted((r["literal"], r["weight"]) for r in rows if r["weight"] != 0)
        text = "".join(
            (" + " if w > 0 else " − ") + (str(abs(w)) if abs(w) != 1 else "") + f"x{j}"
            for j, w in summands
        )
        first = {" + ": "", " − ": "−"}  # the sign of the first summand, as written
        text = first[text[:3]] + text[3:] if text else "0"
        return f"{text} > {rows[0]['threshold']:g}"
    if task == "parity":
        return (
            " ⊕ ".join(
                f"x{r['literal']}"
                for r in sorted(rows, key=lambda r: r["literal"])
                if r["weight"] != 0
            )
            or "⊥"
        )
    assert task == "nearest_neighbours" and not rows
    return None


def test_the_hidden_function_is_written_out_for_every_kind_of_task(tiny_checkpoint, tmp_path):
    """Query hidden_function, which the head figure's title reads, against the functions rows:
    OR, OR of ANDs, AND of ORs, a weighted sum, a parity, and none."""
    from attnstore.extraction import extract

    tasks = ("disjunction", "dnf", "cnf", "int_halfspace", "parity", "nearest_neighbours")
    for task in tasks:
        run_id = extract(
            tmp_path, checkpoint=str(tiny_checkpoint), task=task, samples=3, seed=1
        ).run_id
        for sample in range(3):
            rows = Store(tmp_path).read("functions", run_id=run_id, sample=sample).to_pylist()
            (got,) = attnstore_query(
                tmp_path, "hidden_function", run_id=run_id, sample=sample
            ).itertuples(index=False)
            assert got.task == task and got.sample == sample
            assert got.hidden_function == _written_out(task, rows), (task, sample)


def test_nothing_drawn_in_the_head_figure_is_cut_off(raw_data, tiny_analysed_store):
    """Every visible text (axis labels, tick labels, titles, legends) lies inside the figure."""
    path, run_id, ids = tiny_analysed_store
    shared = plots.head_figure_data(path, run_id, ids["shared_keys"], LAYER, HEAD, SAMPLE)
    for data in (raw_data, shared):
        fig = plots.head_figure(data)
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        texts = [t for t in fig.findobj(mpl.text.Text) if t.get_visible() and t.get_text()]
        assert any(t.get_text() == "x key" for t in texts)
        for t in texts:
            box = t.get_window_extent(renderer)
            inside = box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height
            assert inside, (t.get_text(), box)
        legend_box = _panels(fig)["legend"].get_tightbbox(renderer)
        for name, ax in _panels(fig).items():  # the legend covers no panel
            if name != "legend":
                assert not legend_box.overlaps(ax.get_window_extent(renderer)), name


def test_a_view_that_keeps_some_points_masks_the_rest(tiny_analysed_store):
    path, run_id, ids = tiny_analysed_store
    data = plots.head_figure_data(path, run_id, ids["shared_keys"], LAYER, HEAD, SAMPLE)
    m = TINY["n_points"] // 2
    panels = _panels(plots.head_figure(data))
    for kind in ("x", "y"):
        q = data.queries[kind]
        np.testing.assert_array_equal(q.points, np.arange(m, TINY["n_points"]))
        ax = panels[f"clusters {kind}"]
        strip = ax.get_images()[0].get_array()
        mask = np.ma.getmaskarray(strip)
        assert mask[:m].all() and not mask[m:].any()
        np.testing.assert_array_equal(strip[m:, 0], q.labels)
        assert [t.get_text() for t in ax.texts] == ["not clustered"]


def test_silhouette_figure(raw_data, tiny_analysed_store):
    path, run_id, ids = tiny_analysed_store
    fig = plots.silhouette_figure(raw_data)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["scores x", "scores y"]
    stored = Store(path).read("silhouette", analysis_id=ids["raw"], layer=LAYER, head=HEAD)
    stored = stored.to_pandas().query("sample == @SAMPLE").sort_values("k")
    for line, kind in zip(ax.get_lines(), ("x", "y"), strict=True):
        rows = stored[stored.query_kind == kind]
        np.testing.assert_array_equal(line.get_xdata(), rows.k)
        np.testing.assert_array_equal(line.get_ydata(), rows.silhouette.astype(np.float32))


def test_heads_figure_maps_head_summary(tiny_analysed_store):
    path, run_id, ids = tiny_analysed_store
    fig = plots.heads_figure(path, run_id, ids["raw"], "mean_svm_accuracy", "y")
    ax = fig.axes[0]
    values = ax.get_images()[0].get_array()
    assert values.shape == (TINY["n_layers"], TINY["n_heads"])
    rows = (
        connect(path)
        .execute(
            "select layer, head, mean_svm_accuracy from head_summary "
            "where analysis_id = $a and query_kind = 'y'",
            {"a": ids["raw"]},
        )
        .fetchall()
    )
    assert len(rows) == values.size
    for layer, head, v in rows:
        assert values[layer, head] == pytest.approx(v)
    assert len(ax.texts) == values.size
    assert {t.get_text() for t in ax.texts} == {f"{v:.2f}" for _, _, v in rows}
    assert "mean_svm_accuracy, y queries" in ax.get_title()


def test_head_metrics_are_head_summary_columns(tiny_analysed_store):
    """vocab names the metrics without importing anything heavy; they must be columns of
    the head_summary (head_effect_summary) view that heads_figure reads."""
    path, _, _ = tiny_analysed_store
    with connect(path) as con:
        columns = {row[0] for row in con.execute("describe head_summary").fetchall()}
    assert set(HEAD_METRICS) <= columns
    assert plots.FIGURES["heads"].params[2].choices == HEAD_METRICS + EFFECT_METRICS
    with connect(path) as con:
        effects = {row[0] for row in con.execute("describe head_effect_summary").fetchall()}
    assert set(EFFECT_METRICS) <= effects


@pytest.mark.parametrize("view", ["raw", "shared_keys"])
def test_live_analysis_and_stored_rows_draw_the_same_pixels(
    view, tiny_analysed_store, tiny_checkpoint, tmp_path
):
    """The model run again on the run's prompts, analysed in memory, gives the figure the
    store gives: same attention, same clusters, pixel-identical PNGs."""
    import torch

    from attnstore import tasks
    from attnstore.checkpoint import load_checkpoint

    path, run_id, ids = tiny_analysed_store
    run = Store(path).read("runs", run_id=run_id).to_pylist()[0]
    batch = tasks.sample_task(
        run["task"],
        run["n_samples"],
        run["n_points"],
        run["n_dims"],
        run["seed"],
        **json.loads(run["task_params_json"]),
    )
    model = load_checkpoint(str(tiny_checkpoint)).model
    with torch.no_grad():
        attns = model(
            torch.from_numpy(batch.x), torch.from_numpy(batch.y), return_attn=True
        ).attention
    stored = plots.head_figure_data(path, run_id, ids[view], LAYER, HEAD, SAMPLE)
    live = head_figure_data_live(
        attns[LAYER][SAMPLE, HEAD].numpy(),
        batch.x[SAMPLE],
        batch.y[SAMPLE],
        layer=LAYER,
        head=HEAD,
        sample=SAMPLE,
        view=view,
        hidden_function=stored.hidden_function,  # text the store writes out (its title)
    )
    np.testing.assert_array_equal(live.attention, stored.attention)
    np.testing.assert_array_equal(live.x, stored.x)
    np.testing.assert_array_equal(live.y, stored.y)
    for kind in ("x", "y"):
        a, b = live.queries[kind], stored.queries[kind]
        assert a.best_k == b.best_k
        for field in ("points", "labels", "k_values", "silhouette"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for draw in (plots.head_figure, plots.silhouette_figure):
        pixels = [
            imread(plots.save_figure(draw(d), tmp_path / f"{name}.png"))
            for name, d in (("live", live), ("stored", stored))
        ]
        assert pixels[0].shape[2] == 4 and np.array_equal(*pixels), draw.__name__


def test_a_live_head_needs_the_rows_an_analysis_needs():
    """head_figure_data_live refuses a prompt too short for the analysis with the analysis's
    own rule and words (attnstore.analysis.views: View.k_values), at its boundary."""
    from attnstore.analysis.views import MIN_ROWS, make_view

    def live(n_points: int):
        x, y = np.ones((n_points, 3)), np.ones(n_points)
        attention = np.tril(np.ones((2 * n_points, 2 * n_points)))
        attention /= attention.sum(-1, keepdims=True)
        return head_figure_data_live(attention, x, y, layer=0, head=0, sample=0, view="raw")

    assert live(MIN_ROWS).queries["x"].k_values.tolist() == [2]
    with pytest.raises(ConfigError) as refused:
        live(MIN_ROWS - 1)
    with pytest.raises(ConfigError) as rule:
        make_view("raw").k_values(MIN_ROWS - 1)
    assert str(refused.value) == str(rule.value)


def test_drawing_ignores_the_callers_style(raw_data, tmp_path):
    plain = imread(plots.save_figure(plots.head_figure(raw_data), tmp_path / "plain.png"))
    with mpl.rc_context({"image.cmap": "gray", "axes.grid": True, "font.size": 20}):
        styled = plots.save_figure(plots.head_figure(raw_data), tmp_path / "styled.png")
    assert np.array_equal(plain, imread(styled))


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_the_same_command_twice_writes_the_same_bytes(suffix, tiny_analysed_store, tmp_path):
    path, run_id, _ = tiny_analysed_store
    outputs = []
    for i in range(2):
        out = tmp_path / f"{i}" / f"head{suffix}"
        result = _run(
            "plot", "head", "--store", path, "--layer", LAYER, "--head", HEAD, "--sample",
            SAMPLE, "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output.strip() == str(out)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    for stamp in (b"CreationDate", b"<dc:date>", b"Software", b"Matplotlib v"):
        assert stamp not in outputs[0]


def _manifest(tmp_path, store, run_id, analysis, sample=SAMPLE, with_store=True):
    text = (f'store = "{store}"\n\n' if with_store else "") + (
        f'[[figure]]\nkind = "head"\nrun = "{run_id}"\nanalysis = "{analysis}"\n'
        f'layer = {LAYER}\nhead = {HEAD}\nsample = {sample}\nout = "figs/head.png"\n\n'
        f'[[figure]]\nkind = "silhouette"\nlayer = 0\nhead = 1\nsample = 0\n'
        f'out = "figs/silhouette.svg"\n\n'
        f'[[figure]]\nkind = "heads"\nmetric = "modal_k"\nquery_kind = "y"\n'
        f'out = "figs/heads.pdf"\n'
    )
    path = tmp_path / "figures.toml"
    path.write_text(text)
    return path


def test_manifest_is_rebuilt_whole(tiny_analysed_store, tmp_path):
    store, run_id, ids = tiny_analysed_store
    manifest = _manifest(tmp_path, store, run_id, ids["raw"])
    result = _run("plot", "--manifest", manifest)
    assert result.exit_code == 0, result.output
    names = ["head.png", "silhouette.svg", "heads.pdf"]
    assert result.output.split() == [str(tmp_path / "figs" / n) for n in names]
    first = {n: (tmp_path / "figs" / n).read_bytes() for n in names}
    # The same through the library, the store given explicitly: the same bytes.
    written = plots.plot_manifest(store, manifest)
    assert [p.name for p in written] == names
    assert {p.name: p.read_bytes() for p in written} == first
    # The entry without run/analysis used the latest analysis of the latest run.
    assert Store(store).read("analyses").num_rows == 2


def test_manifest_errors(tiny_analysed_store, tmp_path):
    store, run_id, ids = tiny_analysed_store
    manifest = _manifest(tmp_path, store, run_id, ids["raw"], sample=99)
    with pytest.raises(NotFoundError, match=r"figure 1 \(head.png\): sample 99 not in run "):
        plots.plot_manifest(None, manifest)
    assert not (tmp_path / "figs").exists()  # nothing written
    result = _run("plot", "--manifest", manifest)
    assert result.exit_code == 2 and "samples 0..11" in result.output
    no_store = _manifest(tmp_path, store, run_id, ids["raw"], with_store=False)
    with pytest.raises(ConfigError, match="names no store"):
        plots.plot_manifest(None, no_store)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[figure]]\nkind = "heatmap"\nout = "a.png"\n')
    with pytest.raises(ConfigError, match="unknown kind 'heatmap'; known: emergence, head, heads"):
        plots.read_manifest(bad)
    bad.write_text('[[figure]]\nkind = "head"\nlayer = 0\nhead = 0\nout = "a.png"\n')
    with pytest.raises(ConfigError, match="missing sample"):
        plots.read_manifest(bad)
    with pytest.raises(NotFoundError, match="does not exist"):
        plots.read_manifest(tmp_path / "nope.toml")
    # Each entry is checked against its kind's registered parameters.
    bad.write_text('[[figure]]\nkind = "head"\nlayer = "1"\nhead = 0\nsample = 0\nout = "a.png"\n')
    with pytest.raises(ConfigError, match=r"figure 1 of .* \(head\): layer = '1' is not an int"):
        plots.read_manifest(bad)
    bad.write_text('[[figure]]\nkind = "heads"\nmetric = "silhouette"\nout = "a.png"\n')
    with pytest.raises(ConfigError, match="unknown metric 'silhouette'; known: mean_silhouette"):
        plots.read_manifest(bad)
    bad.write_text('[[figure]]\nkind = "heads"\ncolour = "red"\nout = "a.png"\n')
    with pytest.raises(
        ConfigError, match="unknown keys colour; known: analysis, method, metric, out, query_kind"
    ):
        plots.read_manifest(bad)
    bad.write_text('[[figure]]\nkind = "heads"\n')
    with pytest.raises(ConfigError, match=r"\(heads\): missing out"):
        plots.read_manifest(bad)


def test_a_query_figure_in_a_manifest_is_the_commands_figure(tiny_analysed_store, tmp_path):
    store, _, _ = tiny_analysed_store
    out = tmp_path / "cli.svg"
    result = _run(
        "plot", "query", "heads_by_cluster_quality", "--store", store, "-p", "view=raw",
        "--column", "quality", "--query-kind", "y", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = tmp_path / "figures.toml"
    manifest.write_text(
        '[[figure]]\nkind = "query"\nquery = "heads_by_cluster_quality"\n'
        'params = { view = "raw" }\ncolumn = "quality"\nquery_kind = "y"\n'
        'out = "manifest.svg"\n'
    )
    (written,) = plots.plot_manifest(store, manifest)
    assert written.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", 5], f"layer 5 not in run {{run}}; layers 0..{TINY['n_layers'] - 1}"),
        (["--head", 9], f"head 9 not in run {{run}}; heads 0..{TINY['n_heads'] - 1}"),
        (["--sample", 99], f"sample 99 not in run {{run}}; samples 0..{TINY_SAMPLES - 1}"),
        (["--analysis", "nope"], "unknown analysis 'nope'; in the store: "),
        (["--run", "{run}", "--analysis", "nope"], "unknown analysis 'nope'; in the store: "),
        (["--run", "nope"], "unknown run 'nope'; in the store: {run}"),
    ],
)
def test_what_is_not_in_the_store_is_named(args, message, tiny_analysed_store, tmp_path):
    path, run_id, _ = tiny_analysed_store
    problem = {"--layer": LAYER, "--head": HEAD, "--sample": SAMPLE}
    problem.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [str(v).format(run=run_id) for kv in problem.items() for v in kv]
    result = _run("plot", "head", "--store", path, *flat, "--out", tmp_path / "h.png")
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message.format(run=run_id) in lines[0], result.output
    assert not (tmp_path / "h.png").exists()


def test_bad_values(tiny_analysed_store, raw_data, tmp_path):
    path, run_id, ids = tiny_analysed_store
    with pytest.raises(ConfigError, match="unknown metric 'silhouette'; known: mean_silhouette"):
        plots.heads_figure(path, run_id, ids["raw"], "silhouette")
    with pytest.raises(ConfigError, match="unknown query kind 'z'"):
        plots.heads_figure(path, run_id, ids["raw"], query_kind="z")
    with pytest.raises(ConfigError, match="must end in one of: .pdf, .png, .svg"):
        plots.save_figure(plots.silhouette_figure(raw_data), tmp_path / "s.jpg")
    result = _run("plot")
    assert result.exit_code == 2 and "give --manifest FILE or a subcommand" in result.output


def test_plot_a_query_output(tiny_analysed_store, tmp_path):
    from click.testing import CliRunner

    from attnstore.cli import cli

    path, run_id, ids = tiny_analysed_store
    out = tmp_path / "lift.png"
    args = [
        "plot",
        "query",
        "heads_by_cluster_quality",
        "--store",
        str(path),
        "-p",
        "view=raw",
        "--column",
        "quality",
        "--query-kind",
        "x",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    first = out.read_bytes()
    assert CliRunner().invoke(cli, args).exit_code == 0 and out.read_bytes() == first
    fig = plots.query_figure(
        attnstore_query(path, "heads_by_cluster_quality", view="raw"), "quality", "x"
    )
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 4  # 2 layers x 2 heads, each value written in its cell
    both = CliRunner().invoke(cli, [*args[:7], "--column", "quality", "--out", str(out)])
    assert both.exit_code == 2 and "several rows per (layer, head)" in both.output
    bad = CliRunner().invoke(cli, [*args[:7], "--column", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "no column nope" in bad.output


def attnstore_query(*args, **kwargs):
    from attnstore.queries import query

    return query(*args, **kwargs)


# --- the registry: one entry makes a figure kind --------------------------------------------


def _draw_dummy(store, run=None, *, scale=1.0):
    """A figure kind defined in a test: one bar, the run's layer count times ``scale``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().bar([0], [store.run(run)["n_layers"] * scale])
    return fig


@pytest.fixture
def dummy_kind():
    kind = plots.FigureKind(
        "dummy",
        _draw_dummy,
        (plots.Param("run", help="Run id."), plots.Param("scale", float, 1.0, help="A factor.")),
        doc="A dummy figure, registered by a test.",
    )
    plots.register(kind)
    yield kind
    del plots.FIGURES["dummy"]


def test_a_registered_kind_is_a_command_and_a_manifest_kind(
    dummy_kind, tiny_analysed_store, tmp_path
):
    store, run_id, _ = tiny_analysed_store
    listing = _run("plot", "--help")
    assert (
        listing.exit_code == 0 and "dummy" in listing.output and "A dummy figure" in listing.output
    )
    help_ = _run("plot", "dummy", "--help")
    assert help_.exit_code == 0 and "--run TEXT" in help_.output
    assert "--scale FLOAT" in help_.output and "[default: 1.0]" in help_.output
    out = tmp_path / "cli" / "dummy.png"
    result = _run("plot", "dummy", "--store", store, "--scale", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    manifest = tmp_path / "figures.toml"
    manifest.write_text(
        f'store = "{store}"\n[[figure]]\nkind = "dummy"\nrun = "{run_id}"\nscale = 2\n'
        'out = "manifest/dummy.png"\n'
    )
    (written,) = plots.plot_manifest(None, manifest)
    assert written.read_bytes() == out.read_bytes()
    manifest.write_text('[[figure]]\nkind = "dummy"\nscale = "big"\nout = "d.png"\n')
    with pytest.raises(ConfigError, match=r"\(dummy\): scale = 'big' is not a number"):
        plots.read_manifest(manifest)
    with pytest.raises(ConfigError, match="figure kind 'dummy' is already registered"):
        plots.register(dummy_kind)


def test_a_removed_kind_is_gone(tiny_analysed_store, tmp_path):
    assert "dummy" not in plots.FIGURES  # the fixture above removed it
    result = _run("plot", "dummy", "--help")
    assert result.exit_code == 2 and "No such command 'dummy'" in result.output
    with pytest.raises(ConfigError, match="unknown figure kind 'dummy'; known: emergence, head,"):
        plots.draw_figure("dummy", tiny_analysed_store[0])


# --- where figures go: never into a store --------------------------------------------------


def test_save_figure_refuses_a_store(raw_data, tiny_analysed_store, tmp_path):
    """save_figure is what 'attnstore run' saves with: it refuses a path inside a store (by
    attnstore.json above it, or the store it is given, which may not exist yet)."""
    store = tiny_analysed_store[0]
    fig = plots.silhouette_figure(raw_data)
    with pytest.raises(ConfigError, match=r"output '.*/runs/s.png' lies inside the store '"):
        plots.save_figure(fig, store / "runs" / "s.png")
    with pytest.raises(ConfigError, match=r"lies inside the store '.*/new'"):
        plots.save_figure(fig, tmp_path / "new" / "figures" / "s.png", store=tmp_path / "new")
    assert not (store / "runs" / "s.png").exists() and not (tmp_path / "new").exists()
    written = plots.save_figure(fig, tmp_path / "figures" / "s.png", store=tmp_path / "new")
    assert written.stat().st_size > 0 and sorted(written.parent.iterdir()) == [written]


def test_a_manifest_with_one_bad_output_writes_nothing(tiny_analysed_store, tmp_path):
    store, run_id, ids = tiny_analysed_store
    manifest = _manifest(tmp_path, store, run_id, ids["raw"])
    manifest.write_text(manifest.read_text() + '\n[[figure]]\nkind = "heads"\nout = "x.gif"\n')
    with pytest.raises(ConfigError, match=r"figure 4 of .*/x.gif' must end in one of"):
        plots.plot_manifest(None, manifest)
    assert not (tmp_path / "figs").exists()


# --- maps of what a head carries (attnstore intervene) ---------------------------------------


@pytest.fixture(scope="module")
def iv_store(tmp_path_factory, tiny_analysed_store):
    """A copy of the tiny analysed store with interventions zero (target z) and knockout
    x_to_y."""
    import shutil

    from attnstore.interventions import intervene

    src, run_id, _ = tiny_analysed_store
    path = tmp_path_factory.mktemp("iv") / "store"
    shutil.copytree(src, path)
    results = intervene(
        path, run_id, methods=["zero", "knockout"], targets=["x_to_y"], batch_size=6
    )
    return path, run_id, {(r.method, r.target): r.intervention_id for r in results}


@pytest.mark.parametrize("method", ["zero", "knockout"])
def test_an_effect_map_of_zero_needs_no_target(method, iv_store, tmp_path):
    """`plot heads --method zero` maps the zero intervention: zero, mean and resample take
    the target intervene gives them (z); knockout's is the one given."""
    path, run_id, ids = iv_store
    target = ["--target", "x_to_y"] if method == "knockout" else []
    out = tmp_path / "zero.png"
    result = _run(
        "plot", "heads", "--store", path, "--metric", "late_delta_accuracy", "--method", method,
        *target, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    chosen = ids[(method, "x_to_y" if method == "knockout" else "z")]
    given = target[1] if target else None
    fig = plots.heads_figure(path, metric="late_delta_accuracy", method=method, target=given)
    values = fig.axes[0].get_images()[0].get_array()
    with connect(path) as con:
        rows = con.execute(
            "select layer, head, late_delta_accuracy from head_effect_summary "
            "where intervention_id = $i",
            {"i": chosen},
        ).fetchall()
    assert len(rows) == values.size == TINY["n_layers"] * TINY["n_heads"]
    for layer, head, v in rows:
        assert values[layer, head] == pytest.approx(v)
    assert f"intervention {chosen}" in fig.axes[0].get_title()
    # A change: a diverging colour map centred at 0, so that white is no change.
    (im,) = fig.axes[0].get_images()
    low, high = im.get_clim()
    assert im.get_cmap().name == "RdBu" and low == -high == -np.nanmax(np.abs(values))
    frame = attnstore_query(path, "heads_by_effect", method=method, view="raw")
    (im,) = plots.query_figure(frame, "late_delta_accuracy").axes[0].get_images()
    assert im.get_cmap().name == "RdBu" and im.get_clim()[0] == -im.get_clim()[1]


@pytest.mark.parametrize(
    "args, missing, make",
    [
        (["--method", "mean"], "(mean, z)", "--method mean'"),
        (["--method", "zero", "--target", "x_to_y"], "(zero, x_to_y)", None),  # none makes it
        (["--method", "knockout", "--target", "y_to_x"], "(knockout, y_to_x)", "--target y_to_x'"),
    ],
)
def test_a_missing_intervention_names_what_the_run_has(args, missing, make, iv_store, tmp_path):
    """What the run has is listed, and the command that makes the one asked for, if any."""
    path, run_id, _ = iv_store
    out = tmp_path / "none.png"
    result = _run(
        "plot", "heads", "--store", path, "--metric", "mean_delta_logit", *args, "--out", out
    )
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert f"no intervention {missing} of run {run_id}" in lines[0]
    assert "the run has: knockout/x_to_y, zero/z" in lines[0]
    intervene = f"'attnstore intervene --store {path} --run {run_id} --method"
    assert (intervene in lines[0]) == (make is not None)
    assert make is None or f"{make} makes one" in lines[0]
    assert not out.exists()


def test_an_effect_map_of_a_run_without_interventions(tiny_analysed_store, tmp_path):
    path, run_id, _ = tiny_analysed_store
    none = rf"no intervention \(zero, z\) of run {run_id}; the run has none; 'attnstore intervene"
    with pytest.raises(NotFoundError, match=none):
        plots.heads_figure(path, metric="late_delta_accuracy")
    with pytest.raises(ConfigError, match="unknown method 'zeros'; known: zero, mean, resample"):
        plots.heads_figure(path, metric="late_delta_accuracy", method="zeros")
    with pytest.raises(ConfigError, match="method knockout needs a --target; known: x_to_y_pos"):
        plots.heads_figure(path, metric="late_delta_accuracy", method="knockout")


@pytest.fixture(scope="module")
def set_store(tmp_path_factory, tiny_analysed_store):
    """A copy of the tiny analysed store whose zero interventions are a joint one (L1 H0 and
    L1 H1 together) and one at y positions only: (path, run id, joint id, positional id)."""
    import shutil

    from attnstore.interventions import intervene

    src, run_id, _ = tiny_analysed_store
    path = tmp_path_factory.mktemp("sets") / "store"
    shutil.copytree(src, path)
    (joint,) = intervene(path, run_id, heads="L1H0,L1H1", batch_size=6)
    return path, run_id, joint.intervention_id


def test_a_joint_intervention_has_no_map(set_store):
    """A run whose only (zero, z) intervention changed a set of heads together: no blank map
    but a line naming the set and the command that measures each head alone."""
    path, run_id, _ = set_store
    with pytest.raises(NotFoundError) as caught:
        plots.heads_figure(path, metric="late_delta_accuracy")
    message = str(caught.value)
    assert "change sets of heads together (L1H0,L1H1)" in message, message
    assert f"'attnstore intervene --store {path} --run {run_id} --method zero'" in message


def test_an_effect_map_writes_each_interval_and_names_its_positions(set_store):
    """With a one-at-a-time intervention at y positions only beside the joint one, the map is
    that one's, named so, each value written above its 95% interval (intervention_effects)."""
    from attnstore.interventions import intervene

    path, run_id, _ = set_store
    (positional,) = intervene(path, run_id, positions="y", batch_size=6)
    fig = plots.heads_figure(path, metric="late_delta_accuracy")
    title = fig.axes[0].get_title()
    assert f"intervention {positional.intervention_id}" in title
    assert "query positions y only" in title and "95% interval" in title
    rows = attnstore_query(path, "intervention_effects", intervention_id=positional.intervention_id)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in fig.axes[0].texts}  # fmt: skip
    assert len(texts) == len(rows) == TINY["n_layers"] * TINY["n_heads"]
    for r in rows.itertuples():
        lo, hi = r.late_delta_accuracy_lower, r.late_delta_accuracy_upper
        expected = f"{r.late_delta_accuracy:.2f}\n[{lo:.2f}, {hi:.2f}]"
        assert texts[(r.layer, r.head)] == expected
    # worst_delta_accuracy has no interval: its values alone
    worst = plots.heads_figure(path, metric="worst_delta_accuracy")
    assert all("[" not in t.get_text() for t in worst.axes[0].texts)
    assert "95% interval" not in worst.axes[0].get_title()


# --- what patching restores (attnstore patch) ------------------------------------------------


@pytest.fixture(scope="module")
def patched_store(tmp_path_factory, tiny_store):
    """A copy of the tiny store with an activation patch and a path patch of every pair:
    (path, run id, activation patch id, path patch id)."""
    import shutil

    from attnstore.patching import patch

    src, run_id = tiny_store
    path = tmp_path_factory.mktemp("patched") / "store"
    shutil.copytree(src, path)
    activation = patch(path, run_id, corruption="flip_label", batch_size=6).patch_id
    paths = patch(path, run_id, corruption="flip_label", paths=["*->*.v"]).patch_id
    return path, run_id, activation, paths


def test_a_patching_map_is_centred_at_0_with_its_intervals(patched_store, tmp_path):
    path, run_id, activation, _ = patched_store
    out = tmp_path / "patching.png"
    result = _run("plot", "patching", "--store", path, "--out", out)  # the latest activation
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out) and out.stat().st_size > 0
    fig = plots.patching_figure(Store(path), run_id, activation)
    (im,) = fig.axes[0].get_images()
    low, high = im.get_clim()
    assert im.get_cmap().name == "RdBu" and low == -high
    rows = attnstore_query(path, "heads_by_patching_effect", patch_id=activation)
    values = im.get_array()
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in fig.axes[0].texts}  # fmt: skip
    for r in rows.itertuples():
        assert values[r.layer, r.head] == pytest.approx(r.restored_share)
        lo, hi = r.restored_share_lower, r.restored_share_upper
        assert texts[(r.layer, r.head)] == f"{r.restored_share:.2f}\n[{lo:.2f}, {hi:.2f}]"
    assert f"patch {activation}" in fig.axes[0].get_title()


def test_a_path_matrix_has_senders_down_and_receivers_across(patched_store, tmp_path):
    path, run_id, _, paths = patched_store
    out = tmp_path / "paths.svg"
    result = _run("plot", "paths", "--store", path, "--out", out)
    assert result.exit_code == 0, result.output
    fig = plots.paths_figure(Store(path), run_id, paths)
    ax = fig.axes[0]
    (im,) = ax.get_images()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["L0H0", "L0H1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L1H0", "L1H1"]
    assert im.get_cmap().name == "RdBu" and im.get_clim()[0] == -im.get_clim()[1]
    rows = attnstore_query(path, "path_patching_matrix", patch_id=paths)
    values = im.get_array()
    assert len(rows) == values.size == 4 and rows["restored_share"].notna().all()
    for r in rows.itertuples():
        cell = values[r.head, r.receiver_head]  # senders of layer 0, receivers of layer 1
        assert cell == pytest.approx(r.restored_share)
    assert "receiver (its v input)" in ax.get_xlabel()


def test_a_patch_of_the_other_kind_or_none_is_one_line(patched_store, tiny_store, tmp_path):
    path, run_id, activation, paths = patched_store
    out = tmp_path / "x.png"
    cases = [
        (["paths", "--patch", activation], f"patch {activation} is an activation patch"),
        (["patching", "--patch", paths], f"'attnstore plot paths --patch {paths}' draws it"),
        (["patching", "--patch", "feedfacefeedface"], "no patch 'feedfacefeedface' of run"),
    ]
    for args, message in cases:
        result = _run("plot", args[0], "--store", path, *args[1:], "--out", out)
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], result.output
        assert not out.exists()
    bare, _ = tiny_store
    result = _run("plot", "patching", "--store", bare, "--out", out)
    assert result.exit_code == 2 and "the run has none; 'attnstore patch --store" in result.output


# --- emergence with intervals -----------------------------------------------------------------


def _emergence_frames(with_interval: bool):
    """head_emergence-shaped rows of two heads over three steps (the interval columns where
    ``with_interval``), and accuracy_over_training-shaped rows for the same steps."""
    import pandas as pd

    rows = []
    for head, values in ((0, (0.2, 0.6, 0.7)), (1, (0.1, 0.2, 0.3))):
        for step, v in zip((0, 10, 20), values, strict=True):
            row = {"metric": "quality", "layer": 0, "head": head, "train_step": step,
                   "value": v, "emerged_at": 10.0 if head == 0 else None}  # fmt: skip
            if with_interval:
                row |= {"value_lower": v - 0.05, "value_upper": v + 0.05,
                        "interval_method": "standard_error"}  # fmt: skip
            rows.append(row)
    accuracy = pd.DataFrame(
        [
            {
                "train_step": s,
                "point": p,
                "model_accuracy": 0.5 + s / 100,
                "majority_accuracy": 0.5,
                "elimination_accuracy": None,
            }  # fmt: skip
            for s in (0, 10, 20)
            for p in range(4)
        ]
    )
    return pd.DataFrame(rows), accuracy


def test_emergence_draws_each_heads_interval_as_a_band():
    from matplotlib.collections import PolyCollection

    heads, accuracy = _emergence_frames(with_interval=True)
    fig = plots.emergence_figure(heads, accuracy, threshold=0.5, title="quality")
    top = fig.axes[0]
    bands = [c for c in top.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2  # one per head
    lines = {ln.get_label(): ln for ln in top.get_lines()}
    for band, head in zip(bands, (0, 1), strict=True):
        vertices = band.get_paths()[0].vertices
        rows = heads[heads["head"] == head]
        assert vertices[:, 1].min() == pytest.approx(rows["value_lower"].min())
        assert vertices[:, 1].max() == pytest.approx(rows["value_upper"].max())
        assert band.get_facecolor()[0][:3] == pytest.approx(
            mpl.colors.to_rgb(lines[f"L0 H{head}"].get_color())
        )
    assert "bands: 95% interval (standard error)" in top.get_title()
    plain, _ = _emergence_frames(with_interval=False)
    top = plots.emergence_figure(plain, accuracy, threshold=0.5, title="quality").axes[0]
    assert not [c for c in top.collections if isinstance(c, PolyCollection)]
    assert "bands" not in top.get_title()
