"""The HTML leaderboard rendered in a real browser (headless Chromium through Selenium).

Skips without Chromium, its driver or Selenium, unless PUREBENCH_REQUIRE_BROWSER=1 (set by .ci/run,
which installs them), in which case a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

from purebench.eval.intervals import row_bounds


def _row(defense: str, ra: str, run_id: str, threat: str = "oblivious") -> dict[str, str]:
    row = {
        "run_id": run_id, "dataset": "cifar10", "classifier": "resnet20", "defense": defense, "defense_params": "",
        "attack": "pgd", "attack_params": "steps=10", "threat_model": threat, "norm": "Linf", "eps": "0.03137",
        "n_examples": "128", "shard": "", "sa": "90.0", "ra": ra, "ra_worst": ra, "ra_vote": "", "n_eval": "1",
        "threat_eot_iter": "1", "clean_acc_undefended": "92.0", "adv_acc_undefended": "0.0", "commit": "abc1234def",
        "config_hash": f"hash-{run_id}", "finished_at": f"2026-01-0{run_id[-1]}",
    }  # fmt: skip
    return {**row, **{k: str(v) for k, v in row_bounds(row).items()}}


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
    yield chrome
    chrome.quit()


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
    browser.get(page.as_uri())

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
    assert column(ra_column)[0].startswith("41.0 [") and "[32.9, 49.7]" in column(ra_column)[0]
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
