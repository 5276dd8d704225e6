"""The README's picture of `reflectrl view`: a page opened in headless Chromium, one episode and some steps expanded.

    python scripts/viewer_screenshot.py PAGE.html OUT.png --episode 5 --steps 1,2

Needs what the page tests need (Debian's chromium and chromium-driver, selenium).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import browser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--episode", type=int, default=0, help="Index of the episode in the list.")
    parser.add_argument("--steps", default="1", help="Steps to expand in every column, comma-separated.")
    parser.add_argument("--size", default="1400x1000", help="Window size, WIDTHxHEIGHT.")
    args = parser.parse_args()
    reason = browser.unavailable()
    if reason:
        sys.exit(reason)
    width, height = (int(x) for x in args.size.split("x"))
    driver = browser.start(width, height)
    try:
        browser.open_file(driver, args.page)
        driver.find_elements("css selector", "#episodes li button")[args.episode].click()
        for step in args.steps.split(","):
            for summary in driver.find_elements("css selector", f'.column details.step[data-step="{step}"] > summary'):
                summary.click()
        errors = browser.console_errors(driver)
        if errors:
            sys.exit("the page logged errors: " + "; ".join(errors))
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
