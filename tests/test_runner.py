import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from purebench.errors import PurebenchError
from purebench.eval.results import COLUMNS
from purebench.eval.runner import evaluate

REPO = Path(__file__).resolve().parent.parent
FAST = ["attack=pgd", "n_examples=8", "batch_size=4", "attack.steps=2", "attack.verbose=false"]


def _cli(*args: str, results: Path, env_data: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if env_data is not None:
        env["PUREBENCH_DATA"] = str(env_data)
    return subprocess.Popen(
        [sys.executable, "-m", "purebench", f"results_dir={results}", "hydra.run.dir=" + str(results / "hydra"), *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_row_has_every_column_and_run_file(make_cfg, data_root, tmp_path):
    row = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    assert set(COLUMNS) == set(row) and row["threat_model"] == "oblivious"
    assert 0 <= row["ra"] <= row["sa"] <= 100 and row["n_examples"] == 8
    results = tmp_path / "results"
    with open(results / "leaderboard.csv") as f:
        assert next(csv.DictReader(f))["run_id"] == row["run_id"]
    record = json.loads((results / "runs" / f"{row['run_id']}.json").read_text())
    assert [e["index"] for e in record["per_example"]] == list(range(8))
    assert record["figure"] and (results / record["figure"]).read_bytes()[:4] == b"\x89PNG"  # purification grid
    assert record["config"]["defense"]["sigma"] == 1.0


def test_same_seed_same_numbers(make_cfg, data_root):
    a = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    b = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    assert (a["sa"], a["ra"], a["adv_acc_undefended"]) == (b["sa"], b["ra"], b["adv_acc_undefended"])
    assert a["config_hash"] == b["config_hash"] and a["run_id"] != b["run_id"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("n_examples=0", "n_examples=0 is not valid: .* whole number >= 1"),
        ("n_examples=5000", "has only 1017 images"),
        ("attack.eps=0", "outside \\(0, 1\\]"),
        ("attack.eps=2", "outside \\(0, 1\\]"),
        ("batch_size=0", "batch_size=0 is not valid"),
        ("classifier.name=resnet21", "Did you mean 'resnet20'"),
        ("dataset.root=/nonexistent", "No cifar10 test data"),
        ("classifier.checkpoint=/nonexistent.pt", "Checkpoint not found"),
    ],
)
def test_bad_input_fails_early_with_a_clear_message(make_cfg, data_root, override, message):
    with pytest.raises(PurebenchError, match=message):
        evaluate(make_cfg("defense=none", "attack=pgd", override))


def test_cli_contract_exit_codes_and_messages(tmp_path, data_root):
    ok = _cli("dataset=cifar10", "classifier=resnet20", "defense=none", "attack=pgd", "threat=oblivious",
              "seed=0", *FAST, results=tmp_path / "r")  # fmt: skip
    out, err = ok.communicate(timeout=300)
    assert ok.returncode == 0, err
    assert "RA (defended)" in out
    bad_group = _cli("defense=nonexistent", results=tmp_path / "r")
    _, err = bad_group.communicate(timeout=120)
    assert bad_group.returncode != 0 and "gaussian_blur" in err and "Could not find 'defense/nonexistent'" in err
    bad_eps = _cli("defense=none", "attack.eps=0", results=tmp_path / "r")
    _, err = bad_eps.communicate(timeout=120)
    assert bad_eps.returncode == 2 and "attack.eps=0" in err and "Traceback" not in err


def test_concurrent_runs_append_intact_rows(tmp_path, data_root):
    results = tmp_path / "shared"
    procs = [_cli("defense=median_blur", *FAST, f"seed={s}", results=results) for s in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with open(results / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["seed"]) for r in rows) == [1, 2]
    assert all(r["run_id"] and r["commit"] and r["finished_at"] for r in rows)
    assert len(list((results / "runs").glob("*.json"))) == 2


def test_leaderboard_command_writes_markdown_and_threat_pivot(make_cfg, data_root, tmp_path):
    rows = {t: evaluate(make_cfg("defense=gaussian_blur", *FAST, f"threat={t}")) for t in ("adaptive", "oblivious")}
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "purebench.leaderboard", f"results_dir={results}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "### cifar10 — threat model: oblivious" in done.stdout and "threat model: adaptive" in done.stdout
    pivot = (results / "leaderboard.md").read_text().split("## Across threat models")[1].strip().splitlines()
    header, line = [c.strip() for c in pivot[0].split("|")], [c.strip() for c in pivot[2].split("|")]
    assert header.index("RA % oblivious") < header.index("RA % adaptive")  # ladder order, weakest first
    cell = dict(zip(header, line, strict=True))
    assert cell["RA % oblivious"].startswith(f"{rows['oblivious']['ra']} ")
    assert cell["attack_params"] == rows["oblivious"]["attack_params"] and "steps=2" in cell["attack_params"]
    worst = min(rows.values(), key=lambda r: r["ra"])
    assert cell["worst-case RA % (threat)"] == f"{worst['ra']} ({worst['threat_model']})"
    assert float(cell["per-example worst RA %"]) <= worst["ra"]  # same 8 examples in both runs
    tex = (results / "leaderboard.tex").read_text()
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 2  # one table per threat model
    body = [line for line in tex.splitlines() if line.endswith("\\\\") and "toprule" not in line]
    assert all(line.count(" & ") == 7 for line in body) and "gaussian\\_blur" in tex and "Linf 8/255" in tex
    assert (results / "sa_ra.png").read_bytes()[:4] == b"\x89PNG"
    [path] = (results / "robustbench" / "cifar10" / "adaptive").glob("resnet20--gaussian_blur--*.json")
    record = json.loads(path.read_text())
    assert record["robust_acc"] == str(rows["adaptive"]["ra"]) and record["eps"] == pytest.approx(8 / 255, abs=1e-4)


def test_shards_merge_into_the_unsharded_numbers(make_cfg, data_root, tmp_path):
    sharded = ["defense=gaussian_noise", "attack=pgd", "attack.steps=2", "attack.verbose=false", "n_examples=12",
               "batch_size=4", "threat.n_eval=3"]  # fmt: skip
    whole = evaluate(make_cfg(*sharded))
    shards = [evaluate(make_cfg(*sharded, f"shard={i}/3")) for i in range(3)]
    assert [s["n_examples"] for s in shards] == [4, 4, 4] and len({s["config_hash"] for s in shards}) == 1
    evaluate(make_cfg(*sharded, "shard=1/3"))  # a re-run shard replaces its older row in the merge
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "purebench.leaderboard", "merge", f"results_dir={results}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with open(results / "leaderboard.csv") as f:
        merged = [r for r in csv.DictReader(f) if r["shard"] == "merged 3"]
    assert len(merged) == 1
    for key in ("sa", "ra", "ra_worst", "acc_purified_adv", "adv_acc_undefended", "n_examples"):
        assert float(merged[0][key]) == float(whole[key]), key


def test_an_interrupted_run_resumes_from_its_finished_batches(make_cfg, data_root, tmp_path, monkeypatch):
    from purebench.eval import runner

    cfg = make_cfg("defense=gaussian_blur", *FAST)
    reference = evaluate(cfg)
    calls = []
    original = runner._evaluate_batch

    def crash_on_second(*args, **kwargs):
        calls.append(args[6])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg)
    calls.clear()
    monkeypatch.setattr(runner, "_evaluate_batch", lambda *a, **k: (calls.append(a[6]), original(*a, **k))[1])
    resumed = evaluate(cfg)
    assert calls == [[4, 5, 6, 7]]  # the first batch was not recomputed
    assert (resumed["sa"], resumed["ra"], resumed["adv_acc_undefended"]) == (
        reference["sa"], reference["ra"], reference["adv_acc_undefended"],
    )  # fmt: skip
    assert not list((tmp_path / "results" / "partial").rglob("*.json"))  # the row now holds the batches


def test_oblivious_attack_runs_once_for_a_sweep_of_defenses(make_cfg, data_root, monkeypatch):
    from purebench.attacks.base import Attack

    calls = []
    original = Attack.__call__
    monkeypatch.setattr(Attack, "__call__", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    first = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    assert len(calls) == 2 and first["adv_cache"] == "miss"  # two batches attacked
    second = evaluate(make_cfg("defense=median_blur", *FAST))
    assert len(calls) == 2 and second["adv_cache"] == "hit"  # the second defense reuses them
    assert second["adv_acc_undefended"] == first["adv_acc_undefended"]
    adaptive = evaluate(make_cfg("defense=median_blur", *FAST, "threat=adaptive"))
    assert len(calls) == 4 and adaptive["adv_cache"] == ""  # informed attackers are never cached


def test_wandb_logger_works_offline(make_cfg, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    row = evaluate(make_cfg("defense=none", *FAST, "logger=wandb"))
    runs = list((tmp_path / "results" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and row["run_id"]


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_multirun_over_two_defenses(data_root, tmp_path, launcher):
    results = tmp_path / "results"
    args = [sys.executable, "-m", "purebench", "defense=none,gaussian_blur", *FAST, "threads=1", "figures=0",
            f"results_dir={results}", f"hydra.sweep.dir={tmp_path / 'sweep'}", "--multirun"]  # fmt: skip
    if launcher == "local":
        args.insert(-1, "hydra/launcher=local")
    done = subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(results / "leaderboard.csv") as f:
        assert sorted(r["defense"] for r in csv.DictReader(f)) == ["gaussian_blur", "none"]


def test_slurm_launcher_config_composes(data_root):
    from hydra import compose, initialize_config_dir

    from purebench.config_paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=a100"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "a100"
    assert (launcher.gpus_per_node, launcher.array_parallelism, launcher.name) == (1, 32, "purebench")


def test_sigkill_and_rerun_equals_the_uninterrupted_run(data_root, tmp_path):
    import signal
    import time

    args = ["defense=zeropur", "defense.gs_steps=2", "defense.ap_steps=4", "attack=pgd", "attack.steps=3",
            "attack.verbose=false", "n_examples=24", "batch_size=4", "threat.n_eval=2", "figures=0", "threads=1"]  # fmt: skip
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    run = _cli(*args, results=killed)
    deadline = time.time() + 120
    while not list((killed / "partial").rglob("batch-*.json")) and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (killed / "leaderboard.csv").exists()  # killed before the end: no row, no torn row
    outputs = {}
    for results in (killed, whole):
        done = _cli(*args, results=results)
        out, err = done.communicate()
        assert done.returncode == 0, err
        outputs[results.name] = out + err
    assert "resumed:" in outputs["killed"] and "resumed:" not in outputs["whole"]  # finished batches were reused
    rows = {}
    for results in (killed, whole):
        with open(results / "leaderboard.csv") as f:
            [rows[results.name]] = list(csv.DictReader(f))  # exactly one row each
    for key in ("sa", "ra", "ra_worst", "adv_acc_undefended", "clean_acc_undefended", "n_examples"):
        assert rows["killed"][key] == rows["whole"][key], key


def test_gpu_speed_switches_run_end_to_end(make_cfg, data_root):
    plain = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    fast = evaluate(make_cfg("defense=gaussian_blur", *FAST, "channels_last=true", "amp=true", "compile=aot_eager"))
    assert fast["config_hash"] != plain["config_hash"]  # numerics differ, so the rows are kept apart
    assert abs(fast["sa"] - plain["sa"]) <= 12.5 and fast["n_examples"] == 8


def test_an_identity_purifier_reuses_the_input_predictions(make_cfg, data_root, monkeypatch):
    import purebench.eval.runner as runner

    calls = []
    predict = runner._predict
    monkeypatch.setattr(runner, "_predict", lambda classifier, x: calls.append(1) or predict(classifier, x))
    none = evaluate(make_cfg("defense=none", *FAST))
    assert len(calls) == 4  # 2 batches x (clean, adversarial): SA and RA reuse them
    assert (none["sa"], none["ra"]) == (none["clean_acc_undefended"], none["adv_acc_undefended"])
    calls.clear()
    evaluate(make_cfg("defense=gaussian_blur", *FAST))
    assert len(calls) == 8  # a purifier that returns a new tensor gets its own predictions


def test_unperturbed_examples_are_counted(make_cfg, data_root):
    autoattack = ["attack=autoattack", "attack.n_iter=2", "attack.verbose=false", "n_examples=64", "batch_size=64"]
    aa = evaluate(make_cfg("defense=none", *autoattack))
    misclassified = round(64 * (1 - aa["clean_acc_undefended"] / 100))
    assert misclassified >= 1 and aa["unperturbed"] >= misclassified  # AutoAttack hands these back clean
    assert evaluate(make_cfg("defense=none", *FAST))["unperturbed"] == 0  # PGD perturbs every example


def test_randomized_defense_without_eot_is_flagged(make_cfg, data_root):
    noise = ["defense=gaussian_noise", *FAST, "threat.n_eval=2"]
    assert "without EOT" in evaluate(make_cfg(*noise, "threat=bpda"))["warnings"]
    assert "without EOT" not in evaluate(make_cfg(*noise, "threat=bpda_eot", "threat.eot_iter=2"))["warnings"]


def test_the_end_of_run_summary_lists_only_the_changed_parameters(tmp_path, data_root):
    """Inside the CLI's Hydra app the defaults are composed in that app (a second Hydra failed, and
    the summary listed every parameter as changed). The summary also says what its rung means, which RA
    to quote and where it wrote, and stderr (not a terminal here) carries the stages as log lines."""
    done = _cli("defense=median_blur", "defense.kernel_size=5", *FAST, "threads=1", "figures=0", results=tmp_path)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("changed params")]
    assert line.split(maxsplit=2)[2] == "kernel_size=5 (full list in the run file)"
    (rung,) = [x for x in out.splitlines() if x.startswith("threat model")]
    assert (
        "oblivious: the attacker does not see the purifier: the loosest upper bound" in rung
        and "threat=adaptive" in rung
    )
    assert any(x.startswith("quote") and "not of this rung" in x for x in out.splitlines())  # oblivious
    (run_file,) = (tmp_path / "runs").glob("*.json")
    assert f"written                 {run_file}" in out and str(tmp_path / "leaderboard.csv") in out
    assert "batch 2/2 (images 4-7): attack pgd done" in out + err  # Hydra's log handler writes to stdout


def test_skip_finished_returns_the_leaderboard_row_instead_of_evaluating(make_cfg, data_root, tmp_path, monkeypatch):
    """A sweep re-run after an interruption (or an edit of the code) skips the cells the board holds; a
    superseded row does not count, and skip_finished itself does not change the configuration's hash."""
    from purebench.eval import runner

    first = evaluate(make_cfg("defense=gaussian_blur", *FAST))
    calls = []
    original = runner._evaluate_batch
    monkeypatch.setattr(runner, "_evaluate_batch", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    again = evaluate(make_cfg("defense=gaussian_blur", *FAST, "skip_finished=true"))
    assert calls == [] and again == first
    from purebench.eval.results import finished_row

    results = tmp_path / "results"
    assert finished_row(results, first["config_hash"], "", {})["run_id"] == first["run_id"]
    assert finished_row(results, first["config_hash"], "", {"checkpoint_sha256": "0" * 16}) is None  # retrained
    board = tmp_path / "results" / "leaderboard.csv"
    assert len(board.read_text().splitlines()) == 2  # header and the one row
    (tmp_path / "results" / "superseded.csv").write_text(f"run_id,reason\n{first['run_id']},test\n")
    fresh = evaluate(make_cfg("defense=gaussian_blur", *FAST, "skip_finished=true"))
    assert calls and fresh["run_id"] != first["run_id"] and fresh["config_hash"] == first["config_hash"]
    with pytest.raises(PurebenchError, match="skip_finished is a switch"):
        evaluate(make_cfg("defense=gaussian_blur", *FAST, "skip_finished=maybe"))


def test_the_purification_figure_names_its_run_and_reads_its_differences(tmp_path, monkeypatch):
    """A figure opened on its own says which run it shows (its title) and what the difference colours mean
    (a colour bar under the grid)."""
    import matplotlib.pyplot as plt
    import torch

    from purebench.eval import figures

    kept = []
    monkeypatch.setattr(figures.plt, "close", kept.append)
    x = torch.rand(2, 3, 8, 8)
    figures.purification_grid(x, x.flip(-1), x, ["a", "b"], tmp_path / "f.png", "zeropur under pgd, threat=adaptive")
    (fig,) = kept
    assert fig.get_suptitle() == "zeropur under pgd, threat=adaptive" and (tmp_path / "f.png").is_file()
    (bar,) = [ax for ax in fig.axes if ax.get_xlabel().startswith("|difference|")]
    assert bar.get_position().y1 < min(ax.get_position().y0 for ax in fig.axes if ax is not bar)  # under the grid
    plt.close(fig)


def test_the_runner_titles_its_figure_with_the_run(make_cfg, data_root, monkeypatch):
    from purebench.eval import runner

    titles = []
    monkeypatch.setattr(runner, "purification_grid", lambda *args: titles.append(args[-1]))
    row = evaluate(make_cfg("defense=gaussian_blur", *FAST, "threat=bpda"))
    assert titles == [f"gaussian_blur under pgd, threat=bpda, Linf eps=0.03137, cifar10 (config {row['config_hash']})"]
