"""`treegym view` in headless Chromium: nodes and rewards on the page, a node expands, and
a screenshot is kept (under $TREEGYM_ARTIFACTS if set, as .ci/run does, else the
test's tmp dir) and its path printed.

Needs Debian's chromium and chromium-driver plus selenium; skips without them, unless
TREEGYM_REQUIRE_UI=1 (CI), where that is a failure. No browser is ever downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_unless_required
from test_cli import TREEGYM

from treegym.view import load_trees

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if CHROMIUM is None or DRIVER is None:
        return "Debian's chromium and chromium-driver are not installed"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    reason = _missing()
    if reason is not None:
        skip_unless_required("TREEGYM_REQUIRE_UI", reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="treegym-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def server(trees_file: Path) -> Iterator[str]:
    """`treegym view FILE --port 0` running; yields the URL it printed."""
    proc = subprocess.Popen([TREEGYM, "view", str(trees_file), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() else ''}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("TREEGYM_ARTIFACTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_view_in_chromium(browser, server: str, trees_file: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By

    trees = load_trees(trees_file)
    browser.get(server)
    rows = browser.find_elements(By.CSS_SELECTOR, ".row")
    assert len(rows) == sum(len(t.nodes) for t in trees)
    tasks = browser.find_elements(By.CSS_SELECTOR, "details.task")
    assert len(tasks) == 2 and f"task {trees[0].task.id}" in tasks[0].text
    badges = browser.find_elements(By.CSS_SELECTOR, ".badge.ret")
    returns = sorted(float(b.text[2:]) for b in badges)
    assert returns == sorted(t.reward(leaf) for t in trees for leaf in t.leaves)
    assert 1.0 in returns and 0.0 in returns
    leaf_colours = {r.value_of_css_property("border-left-color")
                    for r in browser.find_elements(By.CSS_SELECTOR, ".row.leaf")}
    assert len(leaf_colours) == 2, "returns 0 and 1 must be coloured apart"
    advantages = [b.text for b in browser.find_elements(By.CSS_SELECTOR, ".badge.adv")]
    assert advantages and all(re.fullmatch(r"A=[+-]\d.*", a) for a in advantages)
    savings = browser.find_elements(By.CSS_SELECTOR, ".savings")[0].text
    assert re.search(r"generated \d+ tokens vs \d+ as chains \(\d+% saved\)", savings)

    node = trees[0].nodes[1]
    row = browser.find_element(By.CSS_SELECTOR, f'.row[data-node="{node.id}"]')
    detail = row.find_element(By.XPATH, "following-sibling::div[@class='detail']")
    assert not detail.is_displayed()
    row.click()
    assert detail.is_displayed()
    assert detail.find_element(By.CSS_SELECTOR, "pre.observation").text == node.observation
    assert f"{len(node.action_ids)} action + {len(node.obs_ids)} observation" in detail.text

    subtree = browser.find_element(By.CSS_SELECTOR, ".twisty:not(.none)")
    subtree.click()
    rows = browser.find_elements(By.CSS_SELECTOR, ".row")
    assert any(not r.is_displayed() for r in rows), "collapsing a node hides its subtree"
    subtree.click()

    shot = artifacts(tmp_path) / "treegym-view.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    with capsys.disabled():  # past pytest's capture, so the CI log says where it is
        print(f"\nscreenshot: {shot}")
