"""The HTML leaderboard rendered in a real browser (headless Chromium through Selenium).

Skips without Chromium, its driver or Selenium, unless PUREBENCH_REQUIRE_BROWSER=1 (set by .ci/run,
which installs them), in which case a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from purebench.eval.intervals import row_bounds
from purebench.eval.results import COLUMNS, append_row, summarise

WINDOW = (1400, 900)
# (defense, recorded parameters) of a headline protocol as experiments/headline_sweep.sh runs it: ten settings,
# the longest labels the matrix meets (checkpoints, changed keys).
HEADLINE = [
    ("zeropur", ""), ("atop", "checkpoint=results/checkpoints/atop_rt2_atop.pt,purifier=unet,purifier_size=32"),
    ("atop", "checkpoint=results/checkpoints/atop_rt2_pre.pt,purifier=unet,purifier_size=32"), ("atop_floor", ""),
    ("impure", "checkpoint=results/checkpoints/impure_lown.pt,t_feature=150,t_image=200"), ("impure_floor", ""),
    ("diffpure", "clip_denoised=True,sampler=ddpm,steps=10"), ("median_blur", ""), ("gaussian_blur", "sigma=1.5"),
    ("none", ""),
]  # fmt: skip
AUTOATTACK = "version=rand,attacks=apgd-ce+apgd-dlr,restarts=1,eot_iter=20(1 used: deterministic model),n_queries=5000"
REASON = "issue 21: ZeroPur's old defaults"


def _row(defense: str, ra: str, run_id: str, threat: str = "oblivious") -> dict[str, str]:
    row = {
        "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20", "defense": defense, "defense_params": "",
        "attack": "pgd", "attack_params": "steps=10", "threat_model": threat, "norm": "Linf", "eps": "0.03137",
        "n_examples": "128", "shard": "", "sa": "90.0", "ra": ra, "ra_worst": ra, "ra_vote": "", "n_eval": "1",
        "threat_eot_iter": "1", "clean_acc_undefended": "92.0", "adv_acc_undefended": "0.0", "commit": "abc1234def",
        "config_hash": f"hash-{run_id}", "finished_at": f"2026-01-0{run_id[-1]}",
    }  # fmt: skip
    return {**row, **{k: str(v) for k, v in row_bounds(row).items()}}


def _write(results: Path, run_id: str, n: int, sa: int, robust: int, **values: str) -> None:
    """One row through the runner's row writer, its figures summarised from per-example records in its run file
    (``sa`` images right clean, the first ``robust`` of them also after the attack)."""
    examples = [{"index": i, "label": 0, "clean_correct": 1, "adv_correct": 0, "sa_correct": int(i < sa),
                 "ra_hits": int(i < robust), "vote_correct": int(i < robust), "perturbed": 1} for i in range(n)]  # fmt: skip
    (results / "runs").mkdir(parents=True, exist_ok=True)
    (results / "runs" / f"{run_id}.json").write_text(json.dumps({"per_example": examples}))
    row = {**dict.fromkeys(COLUMNS, ""), "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20",
           "attack": "pgd", "attack_params": "steps=20,alpha=0.00784,random_start=True", "threat_model": "oblivious",
           "norm": "Linf", "eps": "0.03137", "seed": "0", "n_eval": "1", "threat_eot_iter": "1", "attack_steps": "20",
           "config_hash": run_id, "commit": "0123456789abcdef", "wall_s": "1.0", "defense_randomized": "False",
           "finished_at": f"2026-02-01T00:00:{len(list((results / 'runs').iterdir())):02d}", **values,
           **summarise(examples, 1)}  # fmt: skip
    append_row(results / "leaderboard.csv", {k: str(v) for k, v in row.items()})


@pytest.fixture(scope="module")
def page(tmp_path_factory, data_root) -> Path:
    """A leaderboard as ``python -m purebench.leaderboard`` renders it: the headline protocol (ten settings under
    three PGD rungs and AutoAttack), the default job, runs on other classifiers, budgets and n, one superseded."""
    from purebench.leaderboard.__main__ import main

    results = tmp_path_factory.mktemp("results")
    for k, (defense, params) in enumerate(HEADLINE):
        for step, (attack, threat) in enumerate([("pgd", "oblivious"), ("pgd", "bpda_eot"), ("pgd", "adaptive"),
                                                 ("autoattack", "oblivious")]):  # fmt: skip
            _write(results, f"h{k}{step}", 64, 60 - k, max(40 - 4 * k - 12 * step, 0), defense=defense,
                   defense_params=params, attack=attack, threat_model=threat, protocol="headline",
                   **({"attack_params": AUTOATTACK} if attack == "autoattack" else {}))  # fmt: skip
    _write(results, "default-job", 128, 100, 60, defense="zeropur", attack="autoattack", attack_params=AUTOATTACK)
    _write(results, "resnet56", 32, 30, 10, classifier="resnet56", defense="median_blur")
    _write(results, "wide-budget", 32, 30, 5, defense="median_blur", eps="0.06275")
    _write(results, "old", 16, 16, 9, defense="zeropur", defense_params="eps=0.03922", attack="autoattack")
    (results / "superseded.csv").write_text(f"run_id,reason\nold,{REASON}\n")
    assert main([f"results_dir={results}"]) == 0
    return results / "leaderboard.html"


@pytest.fixture(scope="module")
def browser():
    require = os.environ.get("PUREBENCH_REQUIRE_BROWSER") == "1"
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    if webdriver is None or binary is None or driver is None:
        message = "headless Chromium, chromedriver and selenium are needed (apt: chromium chromium-driver)"
        if require:
            pytest.fail(message + "; PUREBENCH_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_window_size(*WINDOW)
    yield chrome
    chrome.quit()


def _open(browser, page: Path) -> None:
    """Load the page afresh and open every per-threat table (they start collapsed)."""
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    for summary in browser.find_elements(By.CSS_SELECTOR, "details.threat > summary"):
        summary.click()


def _visible_runs(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")
    return [tr.find_element(By.TAG_NAME, "a").text for tr in rows if tr.is_displayed()]


def test_html_leaderboard_renders_sorts_and_links(tmp_path, browser, data_root):
    from selenium.webdriver.common.by import By

    from purebench.leaderboard.html import html_leaderboard
    from purebench.leaderboard.plots import ladder_plots, sa_ra_scatter

    rows = [_row("gaussian_blur", "35.5", "run1"), _row("zeropur", "41.0", "run2"), _row("median_blur", "12.25", "run3"),
            _row("zeropur", "3.0", "run4", threat="adaptive")]  # fmt: skip
    sa_ra_scatter(rows, tmp_path / "sa_ra.png")
    ladder_plots(rows, tmp_path)
    page = tmp_path / "leaderboard.html"
    page.write_text(html_leaderboard(rows, tmp_path))
    _open(browser, page)

    assert not browser.find_elements(By.ID, "matrix")  # no protocol rows: no matrix
    tables = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard")
    assert len(tables) == 2  # one per (dataset, threat model)
    oblivious = next(t for t in tables if t.get_attribute("data-section") == "cifar10-oblivious")
    headers = [th.text for th in oblivious.find_elements(By.TAG_NAME, "th")]
    ra_column, defense_column = headers.index("RA % (95% CI)"), headers.index("defense")

    def column(index: int) -> list[str]:
        return [
            tr.find_elements(By.TAG_NAME, "td")[index].text
            for tr in oblivious.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    assert column(defense_column) == ["zeropur", "gaussian_blur", "median_blur"]  # by RA, highest first
    assert column(ra_column)[0].startswith("41.0") and "[32.9, 49.7]" in column(ra_column)[0]
    assert column(headers.index("budget")) == ["Linf 8/255"] * 3
    oblivious.find_elements(By.TAG_NAME, "th")[ra_column].click()  # first click: descending
    oblivious.find_elements(By.TAG_NAME, "th")[ra_column].click()  # second click: ascending
    assert column(defense_column) == ["median_blur", "gaussian_blur", "zeropur"]
    oblivious.find_elements(By.TAG_NAME, "th")[defense_column].click()
    assert column(defense_column) == ["zeropur", "median_blur", "gaussian_blur"]  # text: reverse alphabetical first

    run_link = oblivious.find_element(By.LINK_TEXT, "run2")
    assert run_link.get_attribute("href").endswith("/runs/run2.json")
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 2 and all(img.get_attribute("src").startswith("data:image/png;base64,") for img in images)
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 300 for img in images)  # decoded


def test_the_page_leads_with_the_finding_and_the_matrix(tmp_path, browser, page):
    from selenium.webdriver.common.by import By

    browser.get(page.as_uri())
    assert browser.find_element(By.TAG_NAME, "table").get_attribute("id") == "matrix"  # the first table
    matrix = browser.find_element(By.ID, "matrix")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in matrix.find_elements(By.CSS_SELECTOR, "tbody tr")]  # fmt: skip
    assert len(rows) == 10 and rows[0][0] == "zeropur" and "atop (atop_rt2_atop.pt)" in [r[0] for r in rows]
    caption = matrix.find_element(By.TAG_NAME, "caption")
    assert "resnet20 on the first 64 cifar10 test images" in caption.text
    # Markdown's code spans (shared with leaderboard.md) are set as code, not shown as backticks.
    assert "`" not in caption.text and "not run" in [c.text for c in caption.find_elements(By.TAG_NAME, "code")]
    defaults = browser.find_element(By.XPATH, "//h2[@id='defaults']/following-sibling::ul[1]")
    assert "`" not in defaults.get_attribute("textContent") and defaults.find_elements(By.TAG_NAME, "code")
    finding = browser.find_element(By.CSS_SELECTOR, "p.finding").text
    assert (
        finding.startswith("In short: once the attacker differentiates through the purifier") and "zeropur" in finding
    )
    # In a 1400 x 900 window the finding and the whole matrix, caption included, are on the first screen.
    bottom, right, height, width = browser.execute_script(
        "var r = document.getElementById('matrix').getBoundingClientRect();"
        "return [r.bottom, r.right, window.innerHeight, document.documentElement.clientWidth];"
    )
    assert 0 < bottom <= height and right <= width
    screenshot = tmp_path / "first_screen.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    # Then the ladder, the terms, the per-threat tables strongest rung first, the other figures, the defaults.
    order = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix, figure.ladder, #terms, details.threat, #figures, "
        "#defaults')).map(function (e) { return e.id || e.className; });"
    )
    threats = ["cifar10-adaptive", "cifar10-bpda_eot", "cifar10-oblivious"]  # oblivious last
    assert order == ["matrix", "ladder", "terms", *threats, "figures", "defaults"]
    terms = [dt.text for dt in browser.find_elements(By.CSS_SELECTOR, "dl.terms dt")]
    assert {"SA", "RA", "worst", "vote", "evals", "EOT", "worst over rungs"} <= set(terms)
    assert {"oblivious", "BPDA", "BPDA+EOT", "adaptive", "known draws", "surrogate", "AutoAttack (rand)",
            "<paper>_floor"} <= set(terms)  # fmt: skip
    # Rungs by their display names in the section titles (the anchors keep the recorded names).
    titles = [s.get_attribute("textContent") for s in browser.find_elements(By.CSS_SELECTOR, "details.threat summary")]
    assert [t.split(" (")[0] for t in titles] == [
        "cifar10 — threat model: adaptive", "cifar10 — threat model: BPDA+EOT", "cifar10 — threat model: oblivious"
    ]  # fmt: skip
    assert all(not d.get_attribute("open") for d in browser.find_elements(By.CSS_SELECTOR, "details.threat"))
    ladder = browser.find_element(By.CSS_SELECTOR, "figure.ladder img")
    assert browser.execute_script("return arguments[0].naturalWidth", ladder) > 300


def test_superseded_rows_are_hidden_until_asked_for(browser, page):
    from selenium.webdriver.common.by import By

    _open(browser, page)
    old = browser.find_element(By.XPATH, "//tr[.//a[text()='old']]")
    assert "superseded" in old.get_attribute("class") and not old.is_displayed()
    assert old.get_attribute("title") == f"superseded: {REASON}"
    assert "old" not in _visible_runs(browser) and "default-job" in _visible_runs(browser)
    browser.find_element(By.ID, "show-superseded").click()
    assert old.is_displayed() and "superseded" in old.text
    browser.find_element(By.ID, "show-superseded").click()
    assert not old.is_displayed()


def test_filters_keep_the_rows_of_one_classifier_budget_or_n(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, page)
    every = _visible_runs(browser)
    assert len(every) == 43  # 40 headline rows, the default job, resnet56, the wider budget (not the superseded)

    def only(name: str, value: str) -> list[str]:
        select = Select(browser.find_element(By.CSS_SELECTOR, f"select[data-filter='{name}']"))
        assert select.first_selected_option.text == "all"
        select.select_by_visible_text(value)
        kept = _visible_runs(browser)
        select.select_by_visible_text("all")
        return kept

    assert only("classifier", "resnet56") == ["resnet56"]
    assert only("budget", "Linf 16/255") == ["wide-budget"]
    assert sorted(only("n", "32")) == ["resnet56", "wide-budget"]
    assert only("n", "128") == ["default-job"] and _visible_runs(browser) == every
    # The menus offer the values of current rows only: n=16 is the superseded row's alone.
    options = [o.text for o in Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter='n']")).options]
    assert options == ["all", "32", "64", "128"]


def test_filters_update_the_counts_and_say_when_a_table_is_left_empty(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, page)

    def state(anchor: str) -> tuple[str, str | None]:
        section = browser.find_element(By.ID, anchor)
        empty = section.find_element(By.CSS_SELECTOR, "tfoot tr.empty")
        return section.find_element(
            By.CSS_SELECTOR, "summary .count"
        ).text, empty.text if empty.is_displayed() else None

    assert state("cifar10-oblivious") == ("(23 rows, 1 superseded)", None)
    assert state("cifar10-adaptive") == ("(10 rows)", None)
    select = Select(browser.find_element(By.CSS_SELECTOR, "select[data-filter='classifier']"))
    select.select_by_visible_text("resnet56")
    assert state("cifar10-oblivious") == ("(1 of 23 rows, 0 of 1 superseded)", None)
    assert state("cifar10-adaptive") == ("(0 of 10 rows)", "no matching rows")
    select.select_by_visible_text("all")
    assert state("cifar10-adaptive") == ("(10 rows)", None)


def test_figures_and_intervals_are_laid_out_alike_and_steps_show(browser, page):
    from selenium.webdriver.common.by import By

    _open(browser, page)
    # Every interval on the line under its figure, in the matrix and in every table, so columns align.
    offsets = browser.execute_script(
        "return Array.from(document.querySelectorAll('#matrix .ci, table.leaderboard .ci')).filter(function (ci) {"
        "  return ci.offsetParent !== null; }).map(function (ci) {"
        "  var td = ci.closest('td').getBoundingClientRect(), box = ci.getBoundingClientRect();"
        "  return [Math.round(box.top - td.top), Math.round(box.height)]; });"
    )
    assert len(offsets) > 100 and len({tuple(o) for o in offsets}) == 1
    ((top, height),) = {tuple(o) for o in offsets}
    assert top >= height  # below the figure's line, not beside it
    # The page's own header for the undefended figures; the attack's steps lead its parameters.
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#cifar10-oblivious th")]
    assert "undefended: clean / adv %" in headers and not any("undef.)" in h for h in headers)
    row = browser.find_element(By.XPATH, "//tr[.//a[text()='h00']]")
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[headers.index("attack")] == "PGD" and cells[headers.index("attack params")].startswith("steps=20, ")


def test_every_column_fits_a_1400_px_window(browser, page):
    from selenium.webdriver.common.by import By

    _open(browser, page)
    browser.find_element(By.ID, "show-superseded").click()
    width, client = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
    )
    assert width <= client <= WINDOW[0]  # no horizontal scrolling
    # Long cells are cut short, their full text on hover: AutoAttack's parameters, a checkpoint by its file name.
    params, attack_params = (browser.find_element(By.XPATH, f"//tr[.//a[text()='h13']]/td[{k}]") for k in (3, 5))
    assert attack_params.text.endswith("…") and attack_params.get_attribute("title") == AUTOATTACK
    assert params.text.startswith("checkpoint=atop_rt2_atop.pt") and "results/checkpoints/" in params.get_attribute(
        "title"
    )
    run = browser.find_element(By.LINK_TEXT, "default-job").find_element(By.XPATH, "..")
    assert run.get_dom_attribute("title") is None  # a short id is shown whole
