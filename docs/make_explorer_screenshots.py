"""Regenerate the explorer screenshots in docs/images/ (needs Graphviz's `dot`,
chromium and chromedriver, and selenium from the `test` extra).

    .venv/bin/python docs/make_explorer_screenshots.py

explorer-googlenet.png: `cnnspec render specs/googlenet.cnn -o googlenet.html` with
inception4a clicked open (and so selected). explorer-resnet50-search.png: ResNet-50
after typing `layer3.1.conv2` into the search box. The browser is the one
tests/test_explorer_browser.py drives, started by its helpers.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from selenium.webdriver.common.by import By  # noqa: E402
from test_explorer_browser import node, open_page, start_chromium  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.diagrams import render  # noqa: E402

IMAGES = ROOT / "docs" / "images"


def main() -> None:
    os.chdir(ROOT)  # source lines read `specs/googlenet.cnn:57`, as the CLI shows them
    IMAGES.mkdir(exist_ok=True)
    driver = start_chromium(1440, 880, scale=1.5)
    try:
        with tempfile.TemporaryDirectory() as folder:
            googlenet(driver, Path(folder))
            resnet50(driver, Path(folder))
    finally:
        driver.quit()


def googlenet(driver, folder: Path) -> None:
    page = render(cnnspec.load("specs/googlenet.cnn"), folder / "googlenet.html", depth=1)
    open_page(driver, page)
    driver.find_element(By.ID, "fit").click()  # inception4a starts below the fold
    node(driver, "inception4a").click()
    save(driver, "explorer-googlenet.png")


def resnet50(driver, folder: Path) -> None:
    page = render(cnnspec.load("specs/resnet50.cnn"), folder / "resnet50.html", depth=1)
    open_page(driver, page)
    driver.find_element(By.ID, "search").send_keys("layer3.1.conv2")
    node(driver, "layer3.1.conv2")  # revealed as it is typed
    save(driver, "explorer-resnet50-search.png")


def save(driver, name: str) -> None:
    out = IMAGES / name
    driver.save_screenshot(str(out))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
