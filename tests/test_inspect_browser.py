"""``seqlab inspect``'s page in a real browser: headless Chromium opens it from file:// with
``#selftest``, the page's own script renders every section, picks another unit and checks
that the text was re-shaded, and writes what it found into ``#selftest``; errors (uncaught
exceptions, ``console.error``) are recorded into ``#errors``. Both come back through
``--dump-dom``. On failure a screenshot is saved and its path is in the message."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from seqlab.tools.cli import main

try:
    from tests.test_inspect import lm_workdir
except ImportError:  # tests/ on sys.path (pytest's rootdir-relative import)
    from test_inspect import lm_workdir

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--mute-audio"]


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip(
        "no headless Chromium found (looked for " + ", ".join(BROWSERS) + "); install "
        "Debian's chromium package: apt-get install -y chromium"
    )


def chromium(*args: str, timeout: float = 60) -> str:
    out = subprocess.run(
        [browser(), *FLAGS, "--virtual-time-budget=10000", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.stdout


def element(dom: str, id_: str) -> str | None:
    m = re.search(rf'<pre id="{id_}"[^>]*>(.*?)</pre>', dom, re.S)
    return html.unescape(m.group(1)) if m else None


def test_page_renders_and_picking_a_unit_reshades(tmp_path_factory, tmp_path, capsys):
    browser()  # skip before building anything when there is no browser
    wd = lm_workdir(tmp_path_factory)
    out = tmp_path / "page"
    assert main(["inspect", "--workdir", wd, "--out", str(out)]) == 0  # the val split's 2000
    capsys.readouterr()
    url = "file://" + os.path.abspath(out / "index.html")
    dom = chromium("--dump-dom", url + "#selftest")
    shot = tmp_path / "inspect_failure.png"

    def fail(why: str) -> str:
        chromium(f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars", url)
        return f"{why}; screenshot: {shot}"

    errors, report = element(dom, "errors"), element(dom, "selftest")
    assert report, fail(f"the page's self-test wrote nothing (errors: {errors!r})")
    r = json.loads(report)
    assert not r["errors"] and not errors, fail(f"errors in the page: {r['errors'] or errors}")
    s = r["sections"]
    assert all(s[k] and not s[k]["na"] for k in s), fail(f"a section is missing: {s}")
    assert s["predictions"]["spans"] == 2000, fail(f"predictions: {s['predictions']}")
    assert s["cells"]["spans"] >= 2 * 2000 and s["cells"]["options"] == 2, fail(f"cells: {s}")
    assert s["gates"]["circles"] == 3 * 32, fail(f"gates: {s['gates']}")  # i, f, o x 32
    assert s["ngram"]["rows"] >= 3 and s["ngram"]["spans"] == 2000, fail(f"n-gram: {s}")
    assert s["samples"]["samples"] == 3, fail(f"samples: {s['samples']}")
    assert r["reshaded"] and r["unit_to"] != r["unit_from"], fail(f"no re-shading: {r}")
    assert "top 5 here" in r["hover"], fail(f"hovering shows no top 5: {r['hover']!r}")
