"""``adaopt explore`` in a real browser: Debian's headless Chromium driven by Selenium.

The page is loaded from a server on a free port; the tests pick a problem, move sliders,
click the map to set a start, and check that what the page holds and shows is what adaopt
computes (the same request answered in-process), that bad input shows the API's message,
that a lesson preset shows the lesson's table, and that the browser logged no errors.
They skip, with the reason, where selenium or /usr/bin/chromium is missing (.ci/run installs both).
"""

import io
import json
import os
import tempfile
import threading
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

from adaopt.explore import compute  # noqa: E402
from adaopt.explore.problems import surface  # noqa: E402
from adaopt.explore.server import _json, make_server  # noqa: E402

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER})")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1000")
SHOTS = os.environ.get("ADAOPT_EXPLORE_SHOTS")  # a folder to keep the screenshots in, to look at them


@pytest.fixture(scope="module")
def page():
    server = make_server(0, warm=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.TemporaryDirectory()
    for flag in (*FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # no Selenium Manager: both paths given
    driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
    wait_ready(driver)
    yield driver
    driver.quit()
    server.shutdown()
    server.server_close()
    profile.cleanup()


def wait_for(driver, script: str, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def wait_ready(driver) -> None:
    """Until the last answer is drawn: no request in flight, no animation running."""
    wait_for(driver, "const S = window.explore; return S && S.last && !S.busy && !S.animating;")


def set_slider(driver, element_id: str, value) -> None:
    driver.execute_script("const el = document.getElementById(arguments[0]); el.value = arguments[1];"
                          "el.dispatchEvent(new Event('input', {bubbles: true}));", element_id, str(value))


def errors(driver, allowed=()) -> list:
    """The browser console's errors, less those containing one of ``allowed``."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def screenshot(driver, name: str):
    """The page as a PIL image (kept under $ADAOPT_EXPLORE_SHOTS when set)."""
    image_mod = pytest.importorskip("PIL.Image")
    png = driver.get_screenshot_as_png()
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        with open(os.path.join(SHOTS, name), "wb") as fh:
            fh.write(png)
    return image_mod.open(io.BytesIO(png)).convert("RGB")


@pytest.fixture(autouse=True)
def fresh_log(page):
    """Each test reads only its own console messages."""
    page.get_log("browser")


def test_sliders_and_a_click_give_adaopts_trajectories(page):
    Select(page.find_element(By.ID, "problem")).select_by_value("quadratic_rotated")
    wait_for(page, "return window.explore.last && window.explore.last.problem === 'quadratic_rotated'")
    set_slider(page, "steps", 200)
    set_slider(page, "beta1", 0.8)
    page.find_element(By.ID, "amsgrad").click()
    wait_for(page, "const r = window.explore.request; return r && r.steps === 200 && r.amsgrad && r.beta1 === 0.8")
    wait_ready(page)
    ActionChains(page).move_to_element_with_offset(page.find_element(By.ID, "map"), 90, -120).click().perform()
    wait_for(page, "const S = window.explore; return S.request.start[0] !== -2.5 && S.last.start[0] !== -2.5")
    wait_ready(page)
    req, shown = page.execute_script("return [window.explore.request, window.explore.last]")
    x, y = req["start"]
    assert 0 < x < 3 and 0 < y < 3  # right of and above the centre of the map, which is (0, 0)
    assert shown == json.loads(_json(compute.run(req)))  # everything drawn is what adaopt computes
    assert req["digits"] == 6 and req["state"] == ["G"]  # to the digits it prints, the one buffer it draws
    adam = next(r for r in shown["runs"] if r["name"] == "adam")
    assert adam["hp"]["amsgrad"] and adam["hp"]["betas"][0] == 0.8 and len(adam["x"]) == 201
    cells = page.find_elements(By.CSS_SELECTOR, "#readout-table tr[data-name='adam'] td")
    assert float(cells[1].text) == pytest.approx(adam["x"][200][0], rel=1e-5, abs=1e-300)
    assert float(cells[3].text) == pytest.approx(adam["f"][200], rel=1e-5, abs=1e-300)
    verdicts = {v.get_attribute("data-name"): v.find_element(By.CLASS_NAME, "v").text
                for v in page.find_elements(By.CSS_SELECTOR, "#verdicts .verdict")}
    assert verdicts == {r["name"]: r["diagnosis"]["verdict"] for r in shown["runs"]}
    image = screenshot(page, "explore.png")
    box = page.find_element(By.ID, "map").rect
    region = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"])))
    assert len(region.getcolors(maxcolors=10**6)) > 500  # contours, shading and six paths, not a blank canvas
    assert errors(page) == []


def test_bad_input_shows_the_apis_message(page):
    Select(page.find_element(By.ID, "problem")).select_by_value("custom")
    wait_for(page, "return window.explore.last && window.explore.last.problem === 'custom'")
    wait_ready(page)
    field = page.find_element(By.ID, "expr")
    field.clear()
    field.send_keys("x**2 +* y")
    page.find_element(By.ID, "expr-go").click()
    shown = wait_for(page, "const e = document.getElementById('error'); return !e.hidden && e.textContent")
    with pytest.raises(ValueError) as refused:
        surface("custom", "x**2 +* y")
    assert shown == f"error: {refused.value}" and "column 7" in shown
    field.clear()
    field.send_keys("log(x) + y**2")
    page.find_element(By.ID, "expr-go").click()
    wait_for(page, "return document.getElementById('error').hidden && window.explore.request.expr === 'log(x) + y**2'")
    wait_ready(page)
    ActionChains(page).move_to_element_with_offset(page.find_element(By.ID, "map"), -120, 0).click().perform()
    shown = wait_for(page, "const e = document.getElementById('error'); return !e.hidden && e.textContent")
    assert "start: f or its gradient is not finite at (-" in shown
    assert errors(page, allowed=("status of 400",)) == []


def test_lesson_example1_preset_shows_the_lessons_table(page):
    page.find_element(By.ID, "lesson-example1").click()
    wait_for(page, "return document.querySelector('#lesson-checks-table tr[data-what=\"x3\"]')")
    row = {w: [td.text for td in page.find_elements(By.CSS_SELECTOR, f"#lesson-checks-table tr[data-what='{w}'] td")]
           for w in ("x2", "x3", "G3")}
    assert row["x3"][1:3] == ["3.902", "3.902"]
    assert row["x2"][1:3] == ["4.165", "4.16552"] and "rounds" in row["x2"][3]
    assert row["G3"][1:3] == ["25039", "25040.6"]
    steps = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
             for tr in page.find_elements(By.CSS_SELECTOR, "#lesson-tables tr")]
    assert ["3", "4.16552", "83.3104", "25040.6", "0.00315971", "3.90228", "152.278"] in steps
    screenshot(page, "lesson.png")
    assert errors(page) == []


def test_a_typed_function_is_drawn_over_the_range_typed(page):
    from adaopt.explore.server import grid

    Select(page.find_element(By.ID, "problem")).select_by_value("custom")
    wait_for(page, "return window.explore.last && window.explore.last.problem === 'custom'")
    wait_ready(page)

    def draw(expr, box):
        for id_, value in zip(("expr", "x-lo", "x-hi", "y-lo", "y-hi"), (expr, *box[0], *box[1])):
            field = page.find_element(By.ID, id_)
            field.clear()
            field.send_keys(str(value))
        page.find_element(By.ID, "expr-go").click()

    draw("x**2 + 10*y**2", [[1.5, 4], [-1, 2]])
    wait_for(page, "const S = window.explore; "
                   "return S.surf && S.last && S.surf.bounds[0][0] === 1.5 && S.last.start[0] === 2.75")
    wait_ready(page)
    surf, last = page.execute_script("return [window.explore.surf, window.explore.last]")
    assert surf == json.loads(_json(grid({"problem": "custom", "expr": "x**2 + 10*y**2",
                                          "bounds": [[1.5, 4], [-1, 2]]})))
    assert last["start"] == [2.75, 0.5]  # (1, 1) is off this map: its middle instead
    draw("x**2 + 10*y**2", [[2, 1], [-1, 2]])
    shown = wait_for(page, "const e = document.getElementById('error'); return !e.hidden && e.textContent")
    assert shown.startswith("error: bounds=[[2, 1], [-1, 2]] is invalid: allowed [[x_min, x_max]")
    draw("x**2 + 10*y**2 + sin(3*x)", [[-3, 3], [-3, 3]])
    wait_for(page, "const S = window.explore; "
                   "return S.surf && S.surf.bounds[0][0] === -3 && document.getElementById('error').hidden")
    assert errors(page, allowed=("status of 400",)) == []
