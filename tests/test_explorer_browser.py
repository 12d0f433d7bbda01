"""The HTML explorer driven in a real browser: Debian's chromium, headless, through
its own chromedriver (Selenium never downloads one: the paths are given and
SE_OFFLINE is set). One browser serves the module.

Checks what a reader does: the page loads without console errors; clicking the
collapsed inception4a in GoogLeNet opens its four branches and the panel shows its
364,512 parameters; its name (or `close`) folds it back; searching `layer3.1.conv2` in
ResNet-50 opens layer3.1, selects and centres the conv and shows its 589,824
parameters; dragging, the wheel and the buttons move and scale the drawing.

`start_chromium` and `open_page` are shared with docs/make_explorer_screenshots.py.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from conftest import SPECS, line_of

import cnnspec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if shutil.which("dot") is None:
    pytest.skip("Graphviz `dot` is not installed (the explorer's layouts need it)",
                allow_module_level=True)
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("chromium and chromedriver are not installed (Debian: `apt-get install "
                "chromium chromium-driver`); the browser tests of the explorer need both",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def start_chromium(width: int = 1500, height: int = 950, scale: float = 1):
    """Headless chromium through the system chromedriver; never the network.
    `scale`: device pixels per CSS pixel (sharper screenshots)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 "--hide-scrollbars", f"--force-device-scale-factor={scale}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def open_page(driver, path) -> None:
    """Load an explorer page and wait until its views are unpacked."""
    driver.get(f"file://{path}")
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "true")


def node(driver, path: str, kind: str = "node"):
    return driver.find_element(By.CSS_SELECTOR, f'#canvas g.{kind}[data-path="{path}"]')


def drawn_paths(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#canvas g[data-path]'),"
        " g => g.dataset.path)")


def fact(driver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#facts dd[data-fact="{name}"]').text


def transform(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#canvas g.viewport").get_attribute(
        "transform")


def severe(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def driver():
    browser = start_chromium()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explorer")
    written = {}
    for name in ("googlenet", "resnet50"):
        out = folder / f"{name}.html"
        out.write_text(cnnspec.load(SPECS / f"{name}.cnn").explorer_html(depth=1),
                       encoding="utf-8")
        written[name] = out
    return written


@pytest.fixture
def googlenet(driver, pages):
    """GoogLeNet at depth 1, fitted: the page opens on its top at a readable zoom,
    with inception4a below the fold."""
    open_page(driver, pages["googlenet"])
    driver.find_element(By.ID, "fit").click()
    return driver


def test_page_loads_without_console_errors(googlenet):
    driver = googlenet
    assert severe(driver) == []
    assert "inception4a" in drawn_paths(driver)
    totals = driver.find_element(By.ID, "totals").text
    assert "13,004,888" in totals and "3x224x224 → 1000" in totals
    assert node(driver, "inception4a").is_displayed()


def test_clicking_inception4a_opens_its_four_branches(googlenet):
    driver = googlenet
    assert not any(p.startswith("inception4a.") for p in drawn_paths(driver))
    node(driver, "inception4a").click()
    paths = drawn_paths(driver)
    for branch in range(1, 5):
        inside = [p for p in paths if p == f"inception4a.branch{branch}"
                  or p.startswith(f"inception4a.branch{branch}.")]
        assert inside, f"branch{branch} is not drawn"
        shown = driver.find_element(By.CSS_SELECTOR, f'#canvas g[data-path="{inside[0]}"]')
        assert shown.is_displayed() and shown.size["width"] > 0
    cluster = node(driver, "inception4a", kind="cluster")
    assert "selected" in cluster.get_attribute("class")
    assert fact(driver, "params").startswith("364,512")
    assert fact(driver, "out") == "512x14x14"
    where = f"googlenet.cnn:{line_of('googlenet', 'inception4a: inception(')}"
    assert where in driver.find_element(By.CSS_SELECTOR, "#facts .where").text
    crumbs = driver.find_element(By.ID, "crumbs").text
    assert "inception4a" in crumbs
    assert severe(driver) == []


def test_clicking_the_open_blocks_name_folds_it(googlenet):
    driver = googlenet
    node(driver, "inception4a").click()
    label = driver.find_element(
        By.CSS_SELECTOR, '#canvas g.cluster[data-path="inception4a"] > text')
    ActionChains(driver).move_to_element(label).click().perform()
    paths = drawn_paths(driver)
    assert "inception4a" in paths
    assert not any(p.startswith("inception4a.") for p in paths)
    assert "selected" in node(driver, "inception4a").get_attribute("class")
    assert fact(driver, "params").startswith("364,512")


def test_opening_down_to_single_layers_and_closing_step_by_step(googlenet):
    driver = googlenet
    node(driver, "inception4a").click()
    node(driver, "inception4a.branch2.1").click()
    crumbs = driver.find_elements(By.CSS_SELECTOR, "#crumbs button")
    assert [c.text for c in crumbs] == ["googlenet", "inception4a", "branch2.1"]
    conv = node(driver, "inception4a.branch2.1.conv")
    conv.click()
    assert fact(driver, "params").startswith("179,712")  # 3*3*96*208, no bias
    assert "selected" in conv.get_attribute("class")
    close = driver.find_element(By.ID, "close-view")
    close.click()
    assert "inception4a.branch2.1" in drawn_paths(driver)  # a node again
    assert "inception4a.branch2.1.conv" not in drawn_paths(driver)
    close.click()
    assert not any(p.startswith("inception4a.") for p in drawn_paths(driver))
    assert not close.is_enabled()


def test_a_crumb_folds_everything_inside_it(googlenet):
    driver = googlenet
    node(driver, "inception4a").click()
    node(driver, "inception4a.branch3.1").click()
    assert "inception4a.branch3.1.conv" in drawn_paths(driver)
    driver.find_element(By.CSS_SELECTOR, '#crumbs button[data-view="inception4a"]').click()
    paths = drawn_paths(driver)
    assert "inception4a.branch3.1" in paths and "inception4a.branch3.1.conv" not in paths
    driver.find_element(By.CSS_SELECTOR, '#crumbs button[data-view=""]').click()
    assert "inception4a" in drawn_paths(driver)
    assert not any(p.startswith("inception4a.") for p in drawn_paths(driver))


def test_search_reveals_a_layer_inside_a_folded_run(driver, pages):
    open_page(driver, pages["resnet50"])
    assert "layer3.1.conv2" not in drawn_paths(driver)
    stage = driver.find_element(By.ID, "stage")  # pan away first: centring must move
    ActionChains(driver).move_to_element_with_offset(stage, 300, 200).click_and_hold() \
        .move_by_offset(-150, -120).move_by_offset(-150, -120).release().perform()
    search = driver.find_element(By.ID, "search")
    search.send_keys("layer3.1.conv2")
    WebDriverWait(driver, 5).until(lambda d: "layer3.1.conv2" in drawn_paths(d))
    conv = node(driver, "layer3.1.conv2")
    assert "selected" in conv.get_attribute("class")
    assert driver.find_element(By.CSS_SELECTOR, "#facts h2").text == "layer3.1.conv2"
    assert fact(driver, "params").startswith("589,824")
    assert fact(driver, "out") == "256x14x14"
    where = driver.find_element(By.CSS_SELECTOR, "#facts .where").text
    assert where.endswith("blocks/resnet.cnn:26")
    # centred on the stage
    stage = stage.rect
    box = conv.rect
    assert abs(box["x"] + box["width"] / 2 - (stage["x"] + stage["width"] / 2)) < 30
    assert abs(box["y"] + box["height"] / 2 - (stage["y"] + stage["height"] / 2)) < 30
    # the rest of layer3 stays folded around it
    assert {"layer3.0", "layer3.2", "layer3.1.conv1"} <= set(drawn_paths(driver))
    assert severe(driver) == []


def test_search_suggests_and_says_when_nothing_matches(driver, pages):
    open_page(driver, pages["resnet50"])
    search = driver.find_element(By.ID, "search")
    search.send_keys("layer4.2.co")
    options = driver.find_elements(By.CSS_SELECTOR, "#suggestions li")
    assert [o.text for o in options][:3] == ["layer4.2.conv1", "layer4.2.conv2",
                                            "layer4.2.conv3"]
    search.clear()
    search.send_keys("inception")
    assert "no layer or block matches" in driver.find_element(By.ID, "suggestions").text


def test_pan_and_zoom_change_the_transform(googlenet):
    driver = googlenet
    stage = driver.find_element(By.ID, "stage")
    start = transform(driver)
    ActionChains(driver).move_to_element_with_offset(stage, -200, 100).click_and_hold() \
        .move_by_offset(60, 40).move_by_offset(60, 40).release().perform()
    dragged = transform(driver)
    assert dragged != start and _scale(dragged) == _scale(start)
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(stage), 0, -300) \
        .perform()
    zoomed = transform(driver)
    assert _scale(zoomed) > _scale(dragged)
    driver.find_element(By.ID, "zoom-out").click()
    assert _scale(transform(driver)) < _scale(zoomed)
    driver.find_element(By.ID, "fit").click()
    whole = driver.find_element(By.CSS_SELECTOR, "#canvas g.graph").rect
    assert whole["height"] <= stage.rect["height"] + 1
    assert severe(driver) == []


def _scale(transform_text: str) -> float:
    return float(re.search(r"scale\(([\d.]+)\)", transform_text).group(1))
