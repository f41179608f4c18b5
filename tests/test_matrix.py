"""The headline matrix (issue 25): the rows of one protocol laid out defense x rung, its worst case over
rungs given only when the white-box rungs ran, and a finding sentence that follows the figures."""

from __future__ import annotations

import json

import pytest

from purebench.eval.results import read_rows
from purebench.eval.runner import evaluate
from purebench.leaderboard.__main__ import main as leaderboard
from purebench.leaderboard.matrix import (
    LEFT_OUT,
    NOT_APPLICABLE,
    NOT_RUN,
    SHATTERED,
    WEAKER_ATTACK,
    Line,
    _name_stages,
    finding,
    matrix_table,
    protocol_caption,
    protocol_lines,
    shattered_cells,
    weaker_attacks,
)

PGD = ["attack=pgd", "attack.steps=3", "attack.verbose=false", "batch_size=8", "protocol=headline"]


@pytest.fixture(scope="module")
def board(tmp_path_factory, data_root):
    """A results folder with a deterministic blur under three rungs (one on fewer images), a randomized
    defense under the oblivious rung only, and a run outside the protocol."""
    from hydra import compose, initialize_config_dir

    from purebench.config_paths import CONF_DIR

    results = tmp_path_factory.mktemp("matrix") / "results"

    def run(*overrides: str) -> dict:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return evaluate(compose("config", overrides=[f"results_dir={results}", "figures=0", *overrides]))

    rows = {
        "oblivious": run("defense=gaussian_blur", *PGD, "n_examples=16"),
        "bpda_eot": run("defense=gaussian_blur", *PGD, "n_examples=16", "threat=bpda_eot"),
        "adaptive": run("defense=gaussian_blur", *PGD, "n_examples=8", "threat=adaptive"),
        "noise": run("defense=gaussian_noise", *PGD, "n_examples=16", "threat.n_eval=2"),
        "other": run("defense=median_blur", *PGD[:-1], "n_examples=16"),
    }
    return results, rows


def test_one_line_per_setting_of_the_protocol_only(board):
    results, rows = board
    lines = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")
    assert [line.label for line in lines] == ["gaussian_blur", "gaussian_noise"]  # median_blur has no protocol
    headers, table = matrix_table(lines)
    blur = dict(zip(headers, table[0], strict=True))
    assert blur["n"] == "16" and blur["SA % (95% CI)"].startswith(f"{rows['oblivious']['sa']:.2f} [")
    assert blur["PGD oblivious"].startswith(f"{rows['oblivious']['ra']:.2f} [")
    adaptive = rows["adaptive"]
    assert blur["PGD adaptive"].endswith(f"(n=8, SA {adaptive['sa']:.2f})")  # fewer images: its n and SA
    assert blur["PGD known draws"] == NOT_APPLICABLE and blur["AutoAttack (rand) oblivious"] == NOT_RUN
    noise = dict(zip(headers, table[1], strict=True))
    assert noise["PGD known draws"] == NOT_RUN and noise["worst over rungs"] == ""  # no white-box rungs: blank


def test_worst_over_rungs_is_the_per_example_minimum_on_the_common_images(board):
    results, rows = board
    line = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")[0]
    records = [
        {e["index"]: e["sa_correct"] * e["ra_hits"] for e in json.loads((results / "runs" / f"{rows[r]['run_id']}.json").read_text())["per_example"]}
        for r in ("oblivious", "bpda_eot", "adaptive")
    ]  # fmt: skip
    assert line.worst_n == 8 and set(records[2]) == set(range(8))  # the adaptive cell's images
    assert line.worst == pytest.approx(100 * sum(min(r[i] for r in records) for i in range(8)) / 8)
    assert line.worst <= rows["adaptive"]["ra"]


def test_the_finding_follows_the_figures(board):
    results, rows = board
    lines = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")
    text = finding(lines)
    low, high = sorted(rows[k]["ra"] for k in ("oblivious", "noise"))
    assert f"the 2 purifiers keep {low:.2f}-{high:.2f}% RA under PGD" in text
    assert "Not yet run under the headline protocol's adaptive rung: gaussian_noise." in text
    blur = lines[0]
    blur.cells["PGD adaptive"] = {**blur.cells["PGD adaptive"], "ra": "30.0"}
    kept = "0 of the 1 run there fall to 5% RA or below; gaussian_blur keeps 30.00% ["
    assert kept in finding(lines) and f"(n=8; SA {rows['adaptive']['sa']:.2f}%)" in finding(lines)  # its n, its SA
    best = f"(1 purifier with both white-box rungs run), the highest is gaussian_blur with {blur.worst:.2f}% ["
    assert best in finding(lines) and "(n=8)" in finding(lines)  # the worst case, read from the run files
    assert "Not computed yet (a white-box rung not run): gaussian_noise." in finding(lines)  # named, not dropped
    blur.worst = 1.0  # every purifier with white-box rungs at or below the broken line: said in words
    assert "(n=8): none keeps more than 5%." in finding(lines)
    blur.worst = 30.0
    assert "with 30.00% [" in finding(lines) and "none keeps" not in finding(lines)
    noise = next(x for x in lines if x.label == "gaussian_noise")
    noise.worst, noise.worst_n = 2.5, 16  # above the broken line, the best is set beside what the others keep
    assert "with 30.00% [" in finding(lines) and "(n=8); the other 1 at most 2.50%." in finding(lines)
    noise.worst = None
    blur.cells["PGD adaptive"] = {**blur.cells["PGD adaptive"], "ra": "0.0"}
    assert "every one of the 1 run there falls to 0.00% RA" in finding(lines)
    blur.cells["PGD BPDA+EOT"] = {**blur.cells["PGD BPDA+EOT"], "ra": "99.0"}  # a rung above the oblivious one
    oblivious = float(blur.cells["PGD oblivious"]["ra"])
    weak = f"PGD BPDA+EOT on gaussian_blur: 99.00 against PGD oblivious {oblivious:.2f}"
    assert (
        f"A weaker attack rather than robustness (above its oblivious figure, or another attack's on the same rung): {weak}"
        in finding(lines)
    )
    noise.cells["PGD known draws"] = {**noise.cells["PGD oblivious"], "threat_model": "known_draws", "ra": "0.0"}
    known = "(known draws), 1 of the 1 randomized purifiers run there fall to 5% RA or below"
    assert f"{known}." in finding(lines)  # noise was not run adaptively: nothing is owed to its randomness
    assert matrix_table(lines)[1][0][4].endswith(WEAKER_ATTACK)
    # An AutoAttack cell above AutoAttack's oblivious figure is quoted against that figure, not PGD's; one above
    # PGD's on the same rung (AutoAttack's single-draw early stop on a randomized purifier) against that.
    base = blur.cells["PGD oblivious"]
    blur.cells["AutoAttack (rand) oblivious"] = {**base, "attack": "autoattack", "ra": "10.0"}
    blur.cells["AutoAttack (rand) adaptive"] = {
        **base,
        "attack": "autoattack",
        "threat_model": "adaptive",
        "ra": "20.0",
    }
    assert "AutoAttack (rand) adaptive on gaussian_blur: 20.00 against PGD adaptive 0.00" in finding(lines)
    blur.cells["PGD adaptive"] = {**blur.cells["PGD adaptive"], "ra": "30.0"}
    assert "AutoAttack (rand) adaptive on gaussian_blur: 20.00 against AutoAttack (rand) oblivious 10.00" in finding(
        lines
    )
    assert "PGD adaptive on gaussian_blur: 30.00 against AutoAttack (rand) adaptive 20.00" in finding(lines)
    assert weaker_attacks(blur)["PGD adaptive"] == "AutoAttack (rand) adaptive"  # the lowest rival is the bound


def test_leaderboard_md_leads_with_the_matrix(board, capsys):
    results, _ = board
    assert leaderboard([f"results_dir={results}"]) == 0
    text = (results / "leaderboard.md").read_text()
    assert text.index("## At a glance") < text.index("## Every run, by threat model")
    threats = [line for line in text.splitlines() if line.startswith("### ")]
    assert threats[-1].endswith("oblivious") and "Linf 8/255" in text


@pytest.mark.parametrize("readme", ["README.md", "results/README.md"])
def test_the_readme_shows_the_matrix_the_committed_results_hold(readme):
    """README's "Results at a glance" and the top of results/README are generated (``readme=README.md,
    results/README.md``); a row committed without regenerating them, or a hand edit of a figure, fails here."""
    from conftest import REPO

    from purebench.eval.results import read_superseded
    from purebench.leaderboard.matrix import README_END, README_START, matrix_body
    from purebench.leaderboard.superseded import split_superseded
    from purebench.leaderboard.table import complete

    results = REPO / "results"
    rows, _ = split_superseded(read_rows(results / "leaderboard.csv"), read_superseded(results))
    shown = (REPO / readme).read_text().split(README_START)[1].split(README_END)[0]
    assert shown.strip() == matrix_body(complete(rows), results / "runs").strip()


def test_refresh_readme_needs_its_markers_and_replaces_only_the_block(tmp_path):
    from purebench.errors import PurebenchError
    from purebench.leaderboard.matrix import README_END, README_START, refresh_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nrest\n")
    refresh_readme([readme], "new table")
    assert readme.read_text() == f"intro\n{README_START}\nnew table\n{README_END}\nrest\n"
    other = tmp_path / "other.md"
    other.write_text("no markers\n")
    with pytest.raises(PurebenchError, match=r"other\.md: the file needs one line"):
        refresh_readme([readme, other], "x")  # checked before anything is written
    assert other.read_text() == "no markers\n" and "new table" in readme.read_text()


def test_the_pivot_gives_no_worst_case_for_a_single_rung(board):
    """68 of 80 pivot lines had one rung yet read as a worst case (issue 25): a lone rung is left blank."""
    from purebench.leaderboard.table import threat_pivot

    results, _ = board
    pivot = threat_pivot(read_rows(results / "leaderboard.csv"), ["oblivious", "bpda_eot", "adaptive"]).splitlines()
    header = [c.strip() for c in pivot[2].split("|")]
    cells = {
        line.split("|")[3].strip(): dict(zip(header, [c.strip() for c in line.split("|")], strict=True))
        for line in pivot[4:]
        if line.startswith("|")
    }
    assert cells["median_blur"]["worst-case RA % (threat)"] == ""  # oblivious only
    assert cells["gaussian_noise"]["worst-case RA % (threat)"] == ""


def test_the_leaderboard_command_refreshes_a_readme_block_or_stops_before_any_output(board, tmp_path):
    from purebench.leaderboard.matrix import README_END, README_START

    results, _ = board
    readme = tmp_path / "README.md"
    second = tmp_path / "results-README.md"
    for path in (readme, second):
        path.write_text(f"# mine\n{README_START}\nstale\n{README_END}\n")
    assert leaderboard([f"results_dir={results}", f"readme={readme},{second}"]) == 0
    assert "stale" not in readme.read_text() and "| gaussian_blur |" in readme.read_text()
    assert second.read_text() == readme.read_text()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "leaderboard.csv").write_text((results / "leaderboard.csv").read_text())
    readme.write_text("no markers\n")
    assert leaderboard([f"results_dir={fresh}", f"readme={readme}"]) == 2
    assert not (fresh / "leaderboard.md").exists()


def test_a_cell_with_fewer_eot_draws_than_the_protocol_says_so(board):
    results, _ = board
    lines = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")
    noise = next(x for x in lines if x.label == "gaussian_noise")
    base = noise.cells["PGD oblivious"]
    noise.cells["PGD BPDA+EOT"] = {**base, "threat_model": "bpda_eot", "threat_eot_iter": "20", "ra": "1.0"}
    noise.cells["PGD adaptive"] = {**base, "threat_model": "adaptive", "threat_eot_iter": "5", "ra": "0.0"}
    headers, table = matrix_table(lines)
    cells = dict(zip(headers, table[[x.label for x in lines].index("gaussian_noise")], strict=True))
    assert cells["PGD adaptive"].endswith("(EOT-5)") and "EOT" not in cells["PGD BPDA+EOT"]


def test_a_surrogate_cell_on_more_images_stands_with_the_full_gradient_cell_as_its_check(board):
    """Exact gradients on 16 images do not replace a surrogate's on 64: the cell shows the 64-image figure,
    says it is a surrogate's and quotes the full-gradient figure beside it; on as many images the full wins."""
    results, _ = board
    rows = read_rows(results / "leaderboard.csv")
    base = next(r for r in rows if r["defense"] == "gaussian_noise")
    later = lambda stamp: {**base, "finished_at": stamp, "threat_eot_iter": "20"}  # noqa: E731
    surrogate = {**later("2100-01-01"), "threat_model": "adaptive_surrogate", "threat_surrogate": "steps=10",
                 "n_examples": "64", "ra": "20.0"}  # fmt: skip
    full = {**later("2100-01-02"), "threat_model": "adaptive", "n_examples": "16", "ra": "6.25"}
    noise = lambda extra: next(x for x in protocol_lines([*rows, *extra], None) if x.label == "gaussian_noise")  # noqa: E731
    line = noise([surrogate, full])
    assert line.cells["PGD adaptive"] is not full and line.checks["PGD adaptive"] == (full, None)
    headers, table = matrix_table([line])
    cells = dict(zip(headers, table[0], strict=True))
    assert cells["PGD adaptive"].startswith("20.00 [") and "surrogate steps=10" in cells["PGD adaptive"]
    assert cells["PGD adaptive"].endswith("full gradient on the first 16: 6.25)")
    text = finding([line])
    assert "keeps 20.00% [" in text and "surrogate steps=10 gradient: a weaker attack, a loose upper bound" in text
    assert "full gradient on the first 16: 6.25%" in text
    # The answer first: what stands above the broken line only through a surrogate says so in the lead.
    assert text.startswith(
        "In short: once the attacker differentiates through the purifier, 0 of the 1 purifier run there keep at "
        "most 5% RA; gaussian_noise keeps more only through a gradient that makes the figure a loose upper bound "
        "(a surrogate's or a shattered one; gaussian_noise: full gradient on the first 16 images 6.25%)."
    )
    # Known draws break it: owed to randomness, but partly to the surrogate's weaker gradient, said so.
    line.randomized = True
    line.cells["PGD known draws"] = {**full, "threat_model": "known_draws", "n_examples": "64", "ra": "0.0"}
    assert (
        "fall to 5% RA or below: what gaussian_noise keeps without the draws is owed to randomness (gaussian_noise: "
        "that adaptive figure came through a surrogate gradient"
    ) in finding([line])
    # With the surrogate cell on the same 16 images, the check compares like with like.
    paired = {**surrogate, "n_examples": "16", "ra": "12.5"}
    line = noise([surrogate, paired, full])
    assert line.cells["PGD adaptive"] is surrogate  # the 64 images still stand
    headers, table = matrix_table([line])
    cell = dict(zip(headers, table[0], strict=True))["PGD adaptive"]
    assert cell.endswith("full gradient on the first 16: 6.25, surrogate there 12.50)")
    assert "full gradient on the first 16: 6.25%, surrogate there 12.50%; SA" in finding([line])
    line = noise([surrogate, {**full, "n_examples": "64"}])
    assert line.cells["PGD adaptive"]["ra"] == "6.25" and not line.checks


def test_the_caption_names_the_protocols_images_whichever_line_comes_first(board):
    """The first line (the most robust) may be a dear defense run on fewer images; the caption still names
    the protocol's number of images: the most any line has (each line's n is in the n column)."""
    results, _ = board
    lines = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")
    fewer = {header: {**row, "n_examples": "4"} for header, row in lines[0].cells.items()}
    first = Line(lines[0].label, fewer)
    assert protocol_caption([first, *lines[1:]])[1].startswith("resnet20 on the first 16 cifar10 test images")


def test_the_caption_says_which_training_stage_each_checkpoint_is(board, tmp_path):
    """A line labelled by its checkpoint's file name gets the file's stage from the shipped manifest, matched
    by the SHA-256 its rows record: a file retrained under the same name is not described by the new entry."""
    results, _ = board
    lines = protocol_lines(read_rows(results / "leaderboard.csv"), results / "runs")
    row = lines[0].main

    def trained(name: str, digest: str) -> Line:
        params = f"checkpoint=results/checkpoints/{name},checkpoint_sha256={digest[:16]}"
        return Line(f"atop ({name})", {"PGD oblivious": {**row, "defense_params": params}})

    shipped = tmp_path / "results"
    (shipped / "checkpoints").mkdir(parents=True)
    (shipped / "checkpoints" / "manifest.json").write_text(json.dumps([
        {"file": "pre.pt", "sha256": "a" * 64, "stage": "pretrain", "init": None, "epochs": 50},
        {"file": "ft.pt", "sha256": "b" * 64, "stage": "finetune", "init": "results/checkpoints/pre.pt", "epochs": 12},
    ]))  # fmt: skip
    caption = protocol_caption([*lines, *[trained("ft.pt", "b" * 64)] * 2, trained("pre.pt", "c" * 64)], shipped)
    assert caption[-1] == (
        "Checkpoints (results/checkpoints/manifest.json): ft.pt = train.stage=finetune from pre.pt, 12 epochs; "
        f"pre.pt: not in results/checkpoints/manifest.json (sha256 {'c' * 16})."
    )
    assert "Checkpoints" not in " ".join(protocol_caption(lines, shipped))  # no line names a checkpoint
    # Two lines of one defense: each label says its stage; a defense with one line keeps its label.
    pair, alone = [trained("ft.pt", "b" * 64), trained("pre.pt", "a" * 64)], trained("ft.pt", "b" * 64)
    for line, defense in ((pair[0], "atop"), (pair[1], "atop"), (alone, "impure")):
        line.cells["PGD oblivious"]["defense"] = defense
    _name_stages([*pair, alone], shipped)
    assert [x.label for x in pair] == ["atop (ft.pt, fine-tuned)", "atop (pre.pt, pretrained)"]
    assert alone.label == "atop (ft.pt)"  # its defense's only line: the file name says enough
    (shipped / "checkpoints" / "manifest.json").write_text("[{")  # unreadable: no sentence, the rest stands
    assert "Checkpoints" not in " ".join(protocol_caption([*lines, trained("ft.pt", "b" * 64)], shipped))


def test_a_shattered_gradient_marks_the_cells_that_differentiate_it(board):
    """ZeroPur declares a shattered gradient (every step moves by a sign): the cells that differentiated its real
    purifier carry the mark, BPDA's and the oblivious one do not, and the finding calls its known-draws figure an
    upper bound rather than robustness; a defense without the declaration gets no mark."""
    from purebench.defenses import DEFENSES
    from purebench.defenses.base import Defense

    assert DEFENSES.built_type("zeropur").shattered_gradient and DEFENSES.built_type("zeropur_gs").shattered_gradient
    assert DEFENSES.built_type("median_blur") is Defense and not Defense.shattered_gradient
    results, _ = board
    rows = read_rows(results / "leaderboard.csv")
    base = next(r for r in rows if r["defense"] == "gaussian_noise")
    zeropur = [
        {**base, "defense": "zeropur", "defense_params": "", "threat_model": threat, "ra": ra, "finished_at": "2100"}
        for threat, ra in (("oblivious", "40.0"), ("bpda_eot", "20.0"), ("known_draws", "17.0"))
    ]
    lines = protocol_lines([*rows, *zeropur], None)
    line = next(x for x in lines if x.label == "zeropur")
    assert line.shattered and shattered_cells(line) == ["PGD known draws"]
    # The adaptive rung marked too, with the qualifier in the finding; not through a surrogate of the purifier,
    # nor with backprop_steps=0 (the identity stands in for the purifier's gradient there).
    adaptive = {**zeropur[-1], "threat_model": "adaptive", "threat_backprop_steps": "all", "ra": "20.0"}
    line.cells["PGD adaptive"] = adaptive
    assert shattered_cells(line) == ["PGD known draws", "PGD adaptive"]
    assert "zeropur keeps 20.00% [" in finding([line]) and f"{SHATTERED} through a shattered gradient" in finding(
        [line]
    )
    for other in (
        {"threat_model": "adaptive_surrogate", "threat_surrogate": "steps=10"},
        {"threat_backprop_steps": "0"},
    ):
        line.cells["PGD adaptive"] = {**adaptive, **other}
        assert shattered_cells(line) == ["PGD known draws"]
    del line.cells["PGD adaptive"]
    assert not any(shattered_cells(x) for x in lines if x is not line)
    headers, table = matrix_table(lines)
    cells = dict(zip(headers, table[lines.index(line)], strict=True))
    assert SHATTERED in cells["PGD known draws"] and SHATTERED not in cells["PGD BPDA+EOT"] + cells["PGD oblivious"]
    assert f"{SHATTERED} zeropur's 17.00% there came through a shattered gradient: a loose upper bound" in finding(
        lines
    )
    line.worst, line.worst_n = 6.0, 64  # its worst case over rungs takes in the shattered ones: said so
    assert f"with 6.00% [2.3, 14.7] (n=64; {SHATTERED} its rungs include a shattered gradient" in finding(lines)
    assert any(item.startswith(f"{WEAKER_ATTACK} = ") and SHATTERED in item for item in protocol_caption(lines))
    assert not any(SHATTERED in item for item in protocol_caption([x for x in lines if x is not line]))


def test_a_cell_left_out_on_purpose_says_so_and_why_until_a_row_stands_there(board, tmp_path):
    """results_dir/left_out.csv turns a gap the sweep will not fill from `not run` into `left out`, its reason in
    the caption once for every line it covers; a row run there stands whatever the file says, another protocol's
    lines are not read, and a line the matrix cannot place is refused with the choices."""
    import shutil

    from purebench.errors import PurebenchError
    from purebench.leaderboard.left_out import FILE_NAME

    results = tmp_path / "results"
    shutil.copytree(board[0], results)
    rows = read_rows(results / "leaderboard.csv")

    def place(*lines: str) -> list[Line]:
        header = "protocol,defense,attack,threat_model,reason"
        (results / FILE_NAME).write_text("\n".join([header, *lines]) + "\n")
        return protocol_lines(rows, results / "runs")

    lines = place(
        'headline,gaussian_noise,autoattack,oblivious,"hours here, a GPU job"',
        "headline,gaussian_blur,autoattack,oblivious,too dear",
        "headline,gaussian_blur,pgd,oblivious,run anyway",  # its row stands
        "other,gaussian_noise,pgd,adaptive,another protocol's",
    )
    headers, table = matrix_table(lines)
    blur, noise = (dict(zip(headers, line, strict=True)) for line in table)
    assert noise["AutoAttack (rand) oblivious"] == blur["AutoAttack (rand) oblivious"] == LEFT_OUT
    assert blur["PGD oblivious"].startswith(rows[0]["ra"][:4]) and noise["PGD adaptive"] == NOT_RUN
    told = [item for item in protocol_caption(lines) if item.startswith("Left out")]
    assert told == [
        f"Left out ({FILE_NAME}). AutoAttack (rand) oblivious for gaussian_blur: too dear. "
        "AutoAttack (rand) oblivious for gaussian_noise: hours here, a GPU job."
    ]
    assert not any(item.startswith("Left out") for item in protocol_caption(place()))  # header only: no gap told
    for bad, said in (
        ("headline,gaussian_blur,autoattack,bpda_eot,why", "choose one of pgd,oblivious, pgd,bpda_eot"),
        ("headline,gausian_blur,pgd,adaptive,why", "Did you mean 'gaussian_blur'"),
        ("headline,gaussian_blur,pgd,adaptive,", "say why the cell is left out"),
    ):
        with pytest.raises(PurebenchError, match=said):
            place(bad)


def test_built_type_reads_the_class_a_factory_builds_without_building_it():
    """The class itself, a factory's resolvable return annotation, else None (nothing to read, a name only type
    checkers import, a partial); an unknown name lists the choices as ``get`` does."""
    import functools

    from purebench.errors import PurebenchError
    from purebench.registry import Registry

    class Thing:
        shattered_gradient = True

    things: Registry[Thing] = Registry("thing")
    things.register("class")(Thing)
    things.register("annotated")(lambda: Thing())
    things._factories["annotated"].__annotations__ = {"return": Thing}
    things.register("bare")(lambda: Thing())
    things.register("unresolved")(lambda: Thing())
    things._factories["unresolved"].__annotations__ = {"return": "OnlyForTypeCheckers"}
    things.register("partial")(functools.partial(Thing))
    assert [things.built_type(n) for n in ("class", "annotated", "bare", "unresolved", "partial")] == [
        Thing, Thing, None, None, None,
    ]  # fmt: skip
    with pytest.raises(PurebenchError, match="Available things: annotated, bare, class"):
        things.built_type("clas")


def test_every_shattered_defense_class_is_what_a_registered_factory_declares():
    """The leaderboard reads ``shattered_gradient`` from the class a factory's annotation names: a class declaring
    it behind a factory annotated ``-> Defense`` would lose its mark silently."""
    from purebench.defenses import DEFENSES
    from purebench.defenses.base import Defense

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    declared = {DEFENSES.built_type(name) for name in DEFENSES.list()}
    shattered = {c for c in subclasses(Defense) if c.__dict__.get("shattered_gradient")}
    assert shattered and shattered <= declared
