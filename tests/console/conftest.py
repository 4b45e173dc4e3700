"""A headless Chromium for the console's browser tests: the system's (Debian's `chromium`),
driven by Playwright through its executable path. Where none is installed the tests skip with
the reason, unless OMNIRELAY_TEST_REQUIRE_BROWSER=1 (set by .ci/run), where they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_BROWSER = os.environ.get("OMNIRELAY_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("OMNIRELAY_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev extra has it)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _unavailable()
    if problem is not None:
        if REQUIRE_BROWSER:
            pytest.fail(f"OMNIRELAY_TEST_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
