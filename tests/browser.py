"""Headless Chromium for the tests of pages (Debian's chromium and chromium-driver, driven by Selenium).

`.ci/run` installs the browser where it is missing; where it cannot be had, `unavailable()` says why and the
tests skip with that reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
# Without these Chromium calls home at every start (updates, sync, QUIC probes): on a machine without a network
# each attempt is refused or waits on a name lookup.
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def unavailable() -> str | None:
    """Why no headless browser can run here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    if _browser() is None:
        return "no Chromium on this machine: apt-get install chromium chromium-driver (.ci/run does)"
    if shutil.which(DRIVER) is None:
        return "no chromedriver on this machine: apt-get install chromium-driver (.ci/run does)"
    return None


def start(width: int = 1400, height: int = 900):
    """A headless Chromium (Selenium WebDriver) that keeps the page's console messages (`console_errors`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _browser()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver from the system package: Selenium would otherwise try to download one.
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which(DRIVER)))


def console_errors(driver) -> list[str]:
    """The page's console errors and uncaught exceptions since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_file(driver, path: Path) -> None:
    driver.get(Path(path).resolve().as_uri())
