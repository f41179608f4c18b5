"""Leaderboard outputs computed from rows alone (no evaluation needed)."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest

from purebench.leaderboard.robustbench import robustbench_records

REPO_RESULTS = Path(__file__).resolve().parent.parent / "results"


def _row(params: str, n: int, ra: float, attack: str, finished: str) -> dict[str, str]:
    return {
        "dataset": "cifar10", "classifier": "resnet20", "defense": "zeropur", "defense_params": params,
        "threat_model": "oblivious", "norm": "Linf", "eps": "0.0314", "sa": "90.0", "ra": str(ra), "ra_worst": str(ra),
        "attack": attack, "attack_params": "", "n_examples": str(n), "run_id": f"run-{finished}", "commit": "c",
        "config_hash": "h", "shard": "", "finished_at": finished, "acc_purified_adv": str(ra),
    }  # fmt: skip


def test_robustbench_records_keep_defense_settings_apart_and_prefer_the_largest_evaluation(tmp_path):
    out = tmp_path / "robustbench"
    stale = out / "cifar10" / "oblivious" / "resnet20--zeropur.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    rows = [
        _row("sigma=1.2", 512, 40.0, "autoattack", "2026-01-01"),
        _row("sigma=1.2", 64, 10.0, "pgd", "2026-01-02"),  # a pilot on fewer images does not stand for the defense
        _row("sigma=1.2", 512, 35.0, "pgd", "2026-01-03"),  # the strongest attack on the full evaluation does
        _row("sigma=0.6", 512, 20.0, "autoattack", "2026-01-04"),  # another setting is another record
    ]
    paths = robustbench_records(rows, out)
    records = {json.loads(p.read_text())["defense_params"]: json.loads(p.read_text()) for p in paths}
    assert len(paths) == 2 and not stale.exists()
    assert records["sigma=1.2"]["robust_acc"] == "35.0" and records["sigma=1.2"]["attack"] == "pgd"
    assert records["sigma=1.2"]["autoattack_acc"] == "40.0"  # AutoAttack's own number stays visible
    assert records["sigma=1.2"]["lower_ra_on_fewer_examples"]["n_examples"] == 64  # the pilot is not hidden
    assert records["sigma=0.6"]["autoattack_acc"] == "20.0" and "lower_ra_on_fewer_examples" not in records["sigma=0.6"]


def test_per_example_worst_case_counts_an_example_broken_by_any_threat_model(tmp_path):
    from purebench.leaderboard.table import threat_pivot

    rows = []
    for threat, hits in (("oblivious", [1, 0]), ("bpda", [0, 1])):  # each rung breaks a different example
        row = {**_row("sigma=1.2", 2, 50.0, "pgd", f"2026-01-0{len(rows) + 1}"), "threat_model": threat, "n_eval": "1"}
        field = "ra_hits" if threat == "bpda" else "ra_correct"  # runs before repeated evaluation wrote ra_correct
        per_example = [{"index": i, "sa_correct": 1, field: h} for i, h in enumerate(hits)]
        (tmp_path / f"{row['run_id']}.json").write_text(json.dumps({"per_example": per_example}))
        rows.append(row)
    table = threat_pivot(rows, ["oblivious", "bpda"], tmp_path).splitlines()
    header, line = [c.strip() for c in table[2].split("|")], [c.strip() for c in table[4].split("|")]
    cell = dict(zip(header, line, strict=True))
    assert cell["worst-case RA % (threat)"].startswith("50.0") and cell["per-example worst RA %"] == "0.00"


def _full_row(**over: str) -> dict[str, str]:
    from purebench.eval.intervals import row_bounds

    row = {**_row("", 128, 40.55, "pgd", "2026-01-01"), "ra_vote": "", "n_eval": "1", "adv_acc_undefended": "0.0",
           "clean_acc_undefended": "90.0", "threat_eot_iter": "1", **over}  # fmt: skip
    return {**row, **{k: str(v) for k, v in row_bounds(row).items()}}


def test_tables_show_changed_parameters_and_intervals(data_root):
    from purebench.leaderboard.params import changed, defaults
    from purebench.leaderboard.table import defaults_legend, grouped_markdown

    base = defaults("zeropur")
    recorded = ",".join(f"{k}={'1.8' if k == 'blur_level' else v}" for k, v in base.items())
    assert changed("zeropur", recorded) == "blur_level=1.8"
    assert changed("zeropur", ",".join(f"{k}={v}" for k, v in base.items())) == "defaults"
    assert changed("impure", "model={'dim': 64, 'depth': 4}") == "model.dim=64"  # only a block's changed keys
    assert changed("my_plugin_defense", "a=1,b=[1, 2]") == "a=1,b=[1, 2]"  # no config: everything shown
    table = grouped_markdown([_full_row(defense_params=recorded)])
    assert "| blur_level=1.8 |" in table and "40.55 [32.4, 49.2]" in table and "ap_steps=50" not in table
    assert "`zeropur` defaults: ap_direction=raw" in defaults_legend([_full_row(defense_params=recorded)])


def test_old_rows_get_their_bounds_from_their_own_figures(tmp_path):
    from purebench.eval.results import COLUMNS, read_rows

    old_columns = COLUMNS[: COLUMNS.index("finished_at") + 1]  # a leaderboard written before the bounds
    row = _full_row()
    path = tmp_path / "leaderboard.csv"
    path.write_text(",".join(old_columns) + "\n" + ",".join(str(row.get(c, "")) for c in old_columns) + "\n")
    (read,) = read_rows(path)
    assert float(read["sa_lo"]) == 83.58 and float(read["sa_hi"]) == 94.09 and read["ra_vote_lo"] == ""
    # no run file to bound its RA by clean correctness: no RA, no RA bounds, the old figure kept apart
    assert read["ra"] == read["ra_lo"] == "" and read["acc_purified_adv"] == "40.55"
    assert path.read_text().splitlines()[0] == ",".join(old_columns)  # reading never rewrites the file


def test_ladder_series_orders_rungs_and_keeps_the_latest_run(tmp_path, data_root):
    from purebench.leaderboard.plots import ladder_plots, ladder_series, rung_order, sa_ra_scatter

    rows = [
        _full_row(threat_model="adaptive", ra="5.0", finished_at="2026-01-02"),
        _full_row(threat_model="oblivious", ra="60.0", finished_at="2026-01-01"),
        _full_row(threat_model="oblivious", ra="55.0", finished_at="2026-01-03"),  # re-run: the latest counts
        _full_row(defense="gaussian_blur", defense_params="sigma=1.0", threat_model="bpda", ra="20.0"),
    ]
    (panel,) = ladder_series(rows)["cifar10"].values()
    assert panel["zeropur"]["oblivious"]["ra"] == "55.0" and set(panel["zeropur"]) == {"adaptive", "oblivious"}
    assert panel["gaussian_blur"]["bpda"]["ra"] == "20.0"
    assert rung_order({"adaptive", "oblivious", "bpda", "custom"}) == ["oblivious", "bpda", "adaptive", "custom"]
    (figure,) = ladder_plots(rows, tmp_path)
    assert figure.name == "ladder_cifar10.png" and figure.stat().st_size > 10_000
    assert sa_ra_scatter(rows, tmp_path / "sa_ra.png").stat().st_size > 10_000


def test_superseded_rows_leave_every_table_and_are_listed_with_their_reason(tmp_path, caplog):
    import logging
    import shutil

    from purebench.leaderboard.__main__ import main

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(REPO_RESULTS / "leaderboard.csv", results)
    shutil.copytree(REPO_RESULTS / "runs", results / "runs")
    board = (results / "leaderboard.csv").read_text()
    old = "20261128T120917-e59134a3-0330ce"  # the default job at acd7d65 (lambda1 averaged over S)
    assert old in board
    (results / "superseded.csv").write_text(f"run_id,reason\n{old},issue 21: old ZeroPur defaults\nno-such-run,typo\n")
    with caplog.at_level(logging.WARNING):
        assert main([f"results_dir={results}"]) == 0
    markdown = (results / "leaderboard.md").read_text()
    tables, listed = markdown.split("## Superseded rows")
    assert old not in tables and old in listed and "issue 21: old ZeroPur defaults" in listed
    assert old not in (results / "leaderboard.tex").read_text()
    page = (results / "leaderboard.html").read_text()  # in the page only as a row hidden until asked for
    (row,) = re.findall(rf"<tr[^>]*>(?:(?!</tr>).)*{old}", page, re.S)
    assert row.startswith('<tr class="superseded" title="superseded: issue 21: old ZeroPur defaults"')
    assert (results / "leaderboard.csv").read_text() == board  # never deleted or rewritten
    assert "no-such-run" in caplog.text
    (results / "superseded.csv").write_text("id,why\nx,y\n")
    assert main([f"results_dir={results}"]) == 2


@pytest.mark.parametrize(
    ("eps", "text"),
    [(8 / 255, "8/255"), (0.5, "0.5"), (16 / 255, "16/255"), (0.03137, "8/255"), (0.1, "0.1"), (0.06275, "16/255")],
)
def test_budgets_print_as_papers_write_them(eps, text, data_root):
    from purebench.leaderboard.latex import cell
    from purebench.leaderboard.table import eps_text

    assert eps_text(eps) == text
    assert cell(_full_row(eps=str(eps)), "eps") == f"Linf {text}"  # the LaTeX tables as well
    assert eps_text(eps, "L2") == f"{eps:.5g}"  # an L2 budget is no fraction of 255


def test_a_setting_is_named_by_the_network_it_loads():
    """A trained network in the label, default or not ("diffpure (diffpure_small)" is not the paper's model), a
    sampler's changed keys beside its model; a classical filter at its defaults by its name alone; digests never."""
    from purebench.leaderboard.params import setting_label

    diffpure = {"defense": "diffpure", "defense_params": "model=results/checkpoints/diffpure_small,model_sha256=ae"}
    assert setting_label(diffpure) == "diffpure (diffpure_small)"
    atop = {"defense": "atop", "defense_params": "checkpoint=results/checkpoints/atop_rt2_atop.pt,checkpoint_sha256=b"}
    assert setting_label(atop) == "atop (atop_rt2_atop.pt)"
    assert setting_label({"defense": "median_blur", "defense_params": "kernel_size=5"}) == "median_blur (kernel_size=5)"
    sampler = {
        **diffpure,
        "defense_params": diffpure["defense_params"] + ",sampler=ddpm",
    }  # another setting, named apart
    assert setting_label(sampler) == "diffpure (diffpure_small, sampler=ddpm)"


# Ten defense settings of the headline protocol, the most robust first (distinct RA under each rung).
HEADLINE_SETTINGS = [
    ("zeropur", ""), ("atop", "checkpoint=results/checkpoints/atop_rt2_atop.pt"), ("impure_floor", ""),
    ("atop", "checkpoint=results/checkpoints/atop_rt2_pre.pt"), ("atop_floor", ""), ("median_blur", ""),
    ("impure", "checkpoint=results/checkpoints/impure.pt"), ("diffpure", ""), ("gaussian_blur", ""), ("none", ""),
]  # fmt: skip


def _headline_rows(settings=HEADLINE_SETTINGS, adaptive_ra: str | None = None) -> list[dict[str, str]]:
    rows = []
    for k, (defense, params) in enumerate(settings):
        for step, (attack, threat) in enumerate(
            [("pgd", "oblivious"), ("pgd", "bpda_eot"), ("pgd", "adaptive"), ("autoattack", "oblivious")]
        ):
            ra = adaptive_ra if adaptive_ra is not None and threat == "adaptive" else str(64.0 - 4 * k - 8 * step)
            rows.append(_full_row(
                defense=defense, defense_params=params, attack=attack, threat_model=threat, protocol="headline",
                eps="0.03137", ra=ra, finished_at=f"2026-02-{k + 1:02d}T0{step}", attack_steps="20", seed="0",
                attack_params="version=rand" if attack == "autoattack" else "steps=20",
            ))  # fmt: skip
    return rows


def _tick_labels_apart(ax) -> bool:
    ax.figure.canvas.draw()
    boxes = [label.get_window_extent() for label in ax.get_xticklabels() if label.get_text()]
    return len(boxes) > 1 and not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))


def test_the_headline_ladder_draws_at_most_eight_settings_and_the_default_job(data_root):
    import matplotlib.pyplot as plt

    from purebench.leaderboard.matrix import protocol_lines
    from purebench.leaderboard.plots import MAX_LINES, headline_ladder_figure

    job = _full_row(attack="autoattack", eps="0.03137", ra="42.7", n_examples="128", finished_at="2026-03-01")
    larger = {**job, "n_examples": "512", "finished_at": "2026-03-02"}  # another command: not the default job
    rows = [*_headline_rows(), job, larger]
    lines = protocol_lines(rows, None)
    assert len(lines) == 10
    fig = headline_ladder_figure(rows, lines)
    panel, legend_area = fig.axes
    entries = [t.get_text() for t in legend_area.get_legend().get_texts()]
    drawn = [e for e in entries if e in {line.label for line in lines}]
    assert drawn == [line.label for line in lines[:MAX_LINES]] and MAX_LINES == 8  # the matrix's order
    assert "atop (atop_rt2_atop.pt)" in drawn  # a checkpoint by its file name
    (star,) = [e for e in entries if e.startswith("default job")]
    assert "python -m purebench" in star and "zeropur, AutoAttack (rand)" in star.replace("\n", " ")
    assert "n=128" in star  # conf/config.yaml's n_examples, whatever ran on more images later
    notes = " ".join(t.get_text() for t in legend_area.texts)
    assert "gaussian_blur" in notes and "none" in notes  # the two not drawn are named
    assert "8/255" in panel.get_title() and _tick_labels_apart(panel)
    plt.close(fig)


def test_the_sa_ra_figure_keeps_its_legend_to_twelve_entries(data_root):
    import matplotlib.pyplot as plt

    from purebench.leaderboard.params import setting_label
    from purebench.leaderboard.plots import MAX_LEGEND, MAX_LINES, ladder_figure, ladder_series, sa_ra_figure

    rows = _headline_rows()
    fig = sa_ra_figure(rows, None)
    entries = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(entries) <= MAX_LEGEND == 12 and "2 other settings" in entries  # 10 settings, 3 rungs: 2 share grey
    [grey] = [t.get_text() for t in fig.texts if t.get_text().startswith("grey: ")]
    named = grey.removeprefix("grey: ").replace("\n", " ").split(".")[0].split(", ")  # then the marks' notes
    assert len(named) == 2 and all(label not in entries for label in named)
    assert {"oblivious", "BPDA+EOT", "adaptive"} <= set(entries) and entries[0] == "zeropur"  # rungs by name
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "resnet20, PGD, Linf 8/255\nheadline protocol, n = 128",  # the ladder's attack first
        "resnet20, AutoAttack (rand), Linf 8/255\nheadline protocol, n = 128",
    ]
    pgd = fig.axes[0]  # a setting's rungs share its clean images: its SA interval is drawn once, not per rung
    assert sum(c.has_xerr for c in pgd.containers) == 10 and len(pgd.containers) == 30
    plt.close(fig)
    # Without protocol rows: every rung of the ladder, ten settings under two rungs each, one panel.
    plain = [{**row, "protocol": "", "threat_model": t} for row in rows[::4] for t in ("oblivious", "known_draws")]
    plain += [{**rows[0], "protocol": "", "threat_model": t} for t in ("bpda", "eot", "adaptive")]
    fig = ladder_figure("cifar10", ladder_series(plain)["cifar10"])
    panel, legend_area = fig.axes
    labels = {setting_label(row) for row in plain}
    assert sum(t.get_text() in labels for t in legend_area.get_legend().get_texts()) == MAX_LINES
    assert "2 more settings" in legend_area.texts[0].get_text() and _tick_labels_apart(panel)
    ticks = [label.get_text() for label in panel.get_xticklabels()]
    assert ticks == ["SA", "oblivious", "BPDA", "EOT", "adaptive", "known draws"]
    assert legend_area.get_position().x0 >= panel.get_position().x1  # the legend right of the axes
    plt.close(fig)


@pytest.mark.parametrize(
    ("threat", "name"),
    [("oblivious", "oblivious"), ("bpda", "BPDA"), ("eot", "EOT"), ("bpda_eot", "BPDA+EOT"), ("adaptive", "adaptive"),
     ("known_draws", "known draws"), ("adaptive_surrogate", "adaptive (surrogate)"),
     ("bpda_eot_surrogate", "BPDA+EOT (surrogate)"), ("my_rung", "my_rung")],
)  # fmt: skip
def test_every_output_names_a_rung_one_way(threat, name):
    from purebench.leaderboard.params import attack_name, rung_name

    assert rung_name(threat) == name
    assert attack_name("pgd") == "PGD" and attack_name("autoattack", "version=rand,attacks=apgd-ce") == (
        "AutoAttack (rand)"
    )
    assert attack_name("autoattack", "version=standard") == "AutoAttack (standard)" and attack_name("x") == "x"


def _markers(panel, rung: int) -> list[tuple[float, float, object]]:
    """(x, RA, colour) of every marker an error bar draws in the column of rung index ``rung``."""
    import matplotlib.colors as mcolors

    points = []
    for container in panel.containers:
        line = container.lines[0]
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            if rung - 0.5 < x < rung + 0.5:
                points.append((float(x), float(y), mcolors.to_hex(line.get_color()), line))
    return points


def test_the_headline_ladder_keeps_every_defense_apart_where_all_sit_at_zero(data_root):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    from purebench.leaderboard.matrix import SHATTERED, protocol_lines
    from purebench.leaderboard.plots import DETERMINISTIC, NOT_RUN, headline_ladder_figure

    settings = [*HEADLINE_SETTINGS[:7], HEADLINE_SETTINGS[-1]]  # seven defenses and the undefended model
    job = _full_row(attack="autoattack", attack_params="version=rand", eps="0.03137", ra="60.0", n_examples="128",
                    finished_at="2026-03-01")  # fmt: skip
    rows = [*_headline_rows(settings, adaptive_ra="0.0"), job]
    lines = protocol_lines(rows, None)
    fig = headline_ladder_figure(rows, lines)
    panel, legend_area = fig.axes
    ticks = [label.get_text() for label in panel.get_xticklabels()]
    assert ticks == ["SA", "oblivious", "BPDA+EOT", "adaptive", "known draws"]
    adaptive = _markers(panel, ticks.index("adaptive") - 1)
    xs = sorted(x for x, _, _, _ in adaptive)
    assert len(adaptive) == 8 and all(y == 0.0 for _, y, _, _ in adaptive)
    assert min(b - a for a, b in itertools.pairwise(xs)) >= 0.05  # every defense's marker apart from the others'
    assert len({colour for _, _, colour, _ in adaptive}) == 8  # one colour per defense
    (none,) = [line for _, _, _, line in adaptive if line.get_linestyle() == "--"]  # the undefended model: dashed
    r, g, b = mcolors.to_rgb(none.get_color())
    assert r == g == b  # grey
    # The default job's star sits right of every marker of its rung, in its defense's colour, and is labelled.
    oblivious = _markers(panel, ticks.index("oblivious") - 1)
    (star,) = [line for _, _, _, line in oblivious if line.get_marker() == "*"]
    others = [x for x, _, _, line in oblivious if line is not star]
    assert star.get_xdata()[0] - max(others) >= 0.05 and star.get_xdata()[0] < 0.5
    legend = legend_area.get_legend()
    (zeropur,) = [
        h for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True) if t.get_text() == "zeropur"
    ]
    assert mcolors.to_hex(star.get_color()) == mcolors.to_hex(zeropur.get_color())  # its defense's colour
    assert mcolors.to_hex(star.get_markeredgecolor()) == "#000000"
    assert any(t.get_text().startswith("default job") for t in legend_area.get_legend().get_texts())
    # No drawn defense is randomized: the known-draws column says why it is empty (zeropur's adaptive marker
    # carries its shattered-gradient mark).
    (note,) = [t for t in panel.texts if t.get_text() != SHATTERED]
    assert note.get_text() == DETERMINISTIC and note.get_position()[0] == ticks.index("known draws") - 1
    # The legend right of the axes; the figure wide rather than tall.
    assert legend_area.get_position().x0 >= panel.get_position().x1
    width, height = fig.get_size_inches()
    assert width >= 2 * height
    plt.close(fig)
    rows[0] = {**rows[0], "defense_randomized": "True"}  # a randomized defense not yet run under known draws
    fig = headline_ladder_figure(rows, protocol_lines(rows, None))
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text() != SHATTERED] == [NOT_RUN]
    plt.close(fig)


def test_a_ladder_line_breaks_at_a_rung_not_run(data_root):
    """A setting run under oblivious and adaptive but not BPDA+EOT: its line leaves a gap at BPDA+EOT rather
    than passing through it at a height nobody measured."""
    import math

    import matplotlib.pyplot as plt

    from purebench.leaderboard.matrix import SHATTERED, WEAKER_ATTACK, protocol_lines
    from purebench.leaderboard.plots import headline_ladder_figure

    rows = [
        r for r in _headline_rows(HEADLINE_SETTINGS[:2]) if r["defense"] != "zeropur" or r["threat_model"] != "bpda_eot"
    ]
    fig = headline_ladder_figure(rows, protocol_lines(rows, None))
    panel = fig.axes[0]
    ticks = [label.get_text() for label in panel.get_xticklabels()]
    gap = [(x, y) for x, y, _, line in _markers(panel, ticks.index("BPDA+EOT") - 1) if line.get_linestyle() == "-"]
    assert len(gap) == 2 and sum(math.isnan(y) for _, y in gap) == 1  # atop's marker there, zeropur's a gap
    flags = lambda fig: [t for t in fig.axes[0].texts if t.get_text() == WEAKER_ATTACK]  # noqa: E731
    # nothing flagged above oblivious, nothing left out; zeropur's adaptive marker is flagged shattered and the
    # note beside the panel says what that means
    (note,) = fig.axes[1].texts
    assert not flags(fig) and note.get_text().replace("\n", " ") == (
        f"{SHATTERED} through a shattered gradient: a loose upper bound."
    )
    assert SHATTERED in [t.get_text() for t in panel.texts]
    plt.close(fig)
    # atop's BPDA+EOT above its oblivious figure: flagged beside the marker and explained, as in the matrix.
    rows = [
        {**r, "ra": "99.0", "ra_lo": "97.0", "ra_hi": "99.5"}
        if r["defense"] == "atop" and r["threat_model"] == "bpda_eot"
        else r
        for r in rows
    ]
    fig = headline_ladder_figure(rows, protocol_lines(rows, None))
    (flag,) = flags(fig)
    assert flag.xy[1] == 99.0
    assert f"{WEAKER_ATTACK} above its oblivious figure" in fig.axes[1].texts[0].get_text()
    plt.close(fig)


def test_the_figures_set_a_surrogate_cell_apart_and_carry_the_matrix_marks(data_root):
    """Where the gradient changes (a surrogate cell between full-gradient ones) the ladder's line is dotted, not
    solid; the SA-RA figure marks a shattered-gradient cell as the matrix does and says what the mark means."""
    import matplotlib.pyplot as plt

    from purebench.leaderboard.matrix import SHATTERED, protocol_lines
    from purebench.leaderboard.plots import SURROGATE_JOIN, headline_ladder_figure, sa_ra_figure

    rows = [
        {**r, "threat_model": "bpda_eot_surrogate", "threat_surrogate": "steps=10"}
        if r["defense"] == "atop" and r["threat_model"] == "bpda_eot"
        else r
        for r in _headline_rows(HEADLINE_SETTINGS[:2])
    ]
    fig = headline_ladder_figure(rows, protocol_lines(rows, None))
    panel = fig.axes[0]
    dotted = [line for line in panel.lines if line.get_linestyle() == SURROGATE_JOIN and len(line.get_xdata())]
    assert len(dotted) == 2  # oblivious -> BPDA+EOT (surrogate) -> adaptive, both of atop's
    assert all(abs(b - a - 1) < 1e-9 for a, b in (line.get_xdata() for line in dotted))
    solid = [(x, y) for x, y, _, line in _markers(panel, 1) if line.get_linestyle() == "-"]
    assert sorted(math.isnan(y) for _, y in solid) == [False, True]  # atop's solid line breaks at the surrogate
    plt.close(fig)
    fig = sa_ra_figure(rows, None)
    assert SHATTERED in [t.get_text() for t in fig.axes[0].texts]  # zeropur's adaptive cell
    assert any(f"{SHATTERED} through a shattered gradient" in t.get_text().replace("\n", " ") for t in fig.texts)
    plt.close(fig)


def test_the_latex_captions_name_rungs_as_the_page_does():
    from purebench.leaderboard.latex import latex_tables

    tex = latex_tables(_headline_rows())
    assert "threat model: BPDA+EOT." in tex and "bpda\\_eot" not in tex


def test_the_sa_ra_axes_show_markers_at_zero_whole(data_root):
    import matplotlib.pyplot as plt

    from purebench.leaderboard.plots import sa_ra_figure

    fig = sa_ra_figure(_headline_rows(adaptive_ra="0.0"), None)
    for ax in (ax for ax in fig.axes if ax.get_title()):
        assert ax.get_xlim() == ax.get_ylim() == (-3, 102)  # the adaptive markers at RA 0 are not cut in half
    plt.close(fig)


def test_the_eot_column_counts_the_draws_an_attack_averages_itself():
    """AutoAttack rand averages its own eot_iter draws (its rows set the threat's EOT to 1): the column says 20,
    whose they are, not 1."""
    from purebench.leaderboard.table import eot_text

    rand = "version=rand,attacks=apgd-ce+apgd-dlr,restarts=1,eot_iter=20,n_queries=5000"
    assert eot_text({"threat_eot_iter": "1", "attack_params": rand}) == "20 (the attack's)"
    assert eot_text({"threat_eot_iter": "5", "attack_params": rand}) == "5 x 20"
    assert eot_text({"threat_eot_iter": "20", "attack_params": "steps=20"}) == "20"
    assert eot_text({"threat_eot_iter": "1", "attack_params": rand.replace("eot_iter=20", "eot_iter=1")}) == "1"
