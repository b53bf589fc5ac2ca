"""`aniportrait view` in a real browser: the system's Chromium (apt-get install chromium chromium-driver), headless,
driven by Selenium, against the command run as a user runs it.

Without Chromium the tests skip and say why; with ANIPORTRAIT_REQUIRE_BROWSER=1 (CI sets it) they fail instead.
ANIPORTRAIT_VIEWER_SCREENSHOT=PATH saves a screenshot of the page after a slider move (the README's picture);
ANIPORTRAIT_VIEWER_RATE=PATH writes the preview rate measured during the drag as JSON
(benchmarks/viewer_preview.py sets both).
"""

import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import imageio.v2 as imageio
import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SERVER_START_SECONDS = 180
SETTLE_SECONDS = 60
PAGE_SETTLE_SECONDS = 5
DRAG_MOVES, DRAG_STEP_PIXELS, DRAG_MOVE_SECONDS = 40, 6.0, 0.02  # about 1 degree per move, 40 degrees in all


def _require(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("ANIPORTRAIT_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (ANIPORTRAIT_REQUIRE_BROWSER=1)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("gradio")
    port = _free_port()
    command = [sys.executable, "-m", "aniportrait", "view", "--port", str(port), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, lines = time.time() + SERVER_START_SECONDS, []
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "viewer at http" in line:
            break
    if not lines or "viewer at http" not in lines[-1]:
        process.kill()
        pytest.fail("aniportrait view did not start:\n" + "".join(lines))
    yield f"http://127.0.0.1:{port}/"
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    _require(
        chromium is not None and driver is not None,
        "no chromium/chromedriver: apt-get install chromium chromium-driver",
    )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require(False, "no selenium: pip install selenium (it is in the test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    WebDriverWait(browser, SETTLE_SECONDS).until(lambda d: _image_src(d) and _status(d).startswith("full"))
    time.sleep(PAGE_SETTLE_SECONDS)  # a drag right after the first image sometimes got no release event
    return browser


def _image_src(driver) -> str:
    return driver.execute_script("const i = document.querySelector('#frame img'); return i ? i.src : '';")


def _status(driver) -> str:
    return driver.execute_script("const t = document.querySelector('#status textarea'); return t ? t.value : '';")


def _mouse(driver, kind: str, x: float, y: float) -> None:
    """A real mouse event at page coordinates (through the DevTools protocol: no round trip through actions)."""
    event = {"type": kind, "x": x, "y": y, "button": "left", "buttons": 0 if kind == "mouseReleased" else 1}
    if kind != "mouseMoved":
        event["clickCount"] = 1
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", event)


def _image(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=30) as response:
        return imageio.imread(io.BytesIO(response.read()))[..., :3]


def _render(tmp_path, pose: np.ndarray | None = None) -> np.ndarray:
    """Frame 0 of `aniportrait render` for seed 0, psi 0.7 (the page's start), with this pose."""
    command = [sys.executable, "-m", "aniportrait", "render", "--seeds", "0", "--psi", "0.7", "--n-interval", "1"]
    if pose is not None:
        np.save(tmp_path / "pose.npy", pose[None].astype(np.float32))
        command += ["--pose", str(tmp_path / "pose.npy")]
    else:
        command += ["--trajectory", "yaw"]  # its first keyframe is the rest frame
    command += ["--png", "--quiet", "--device", "cpu", "--out", str(tmp_path / "out")]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return imageio.imread(tmp_path / "out" / "frames_0" / "frame_00000.png")[..., :3]


def test_the_page_opens_on_the_full_frame_that_render_gives(page, tmp_path):
    assert _status(page).startswith("full frame, 128x128, seed 0, psi 0.70")
    np.testing.assert_array_equal(_image(_image_src(page)), _render(tmp_path))


def test_dragging_a_slider_previews_live_then_shows_the_full_frame_that_render_gives(page, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    before_src = _image_src(page)
    before = _image(before_src)
    # Record every image the page shows, with its status line, while the slider is dragged.
    page.execute_script(
        """
        window.__shown = []; let last = '';
        window.__recorder = setInterval(() => {
            const i = document.querySelector('#frame img'), t = document.querySelector('#status textarea');
            if (i && i.src !== last) { last = i.src; window.__shown.push([performance.now(), t ? t.value : '']); }
        }, 5);
        """
    )
    slider = page.find_element(By.CSS_SELECTOR, "#head_yaw input[type=range]")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
    box = page.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.x, r.y, r.width, r.height];", slider
    )
    x, y = box[0] + box[2] / 2, box[1] + box[3] / 2  # the thumb sits at the centre (0 degrees)
    started = time.perf_counter()
    _mouse(page, "mousePressed", x, y)
    for _ in range(DRAG_MOVES):  # a steady drag to the right, as a hand makes it
        x += DRAG_STEP_PIXELS
        _mouse(page, "mouseMoved", x, y)
        time.sleep(DRAG_MOVE_SECONDS)
    _mouse(page, "mouseReleased", x, y)
    dragged = time.perf_counter() - started
    try:
        WebDriverWait(page, SETTLE_SECONDS).until(
            lambda d: _status(d).startswith("full") and _image_src(d) != before_src
        )
    except TimeoutException:
        shown = page.execute_script("return window.__shown;")
        value = page.find_element(By.CSS_SELECTOR, "#head_yaw input[type=number]").get_attribute("value")
        pytest.fail(
            f"no new full frame {SETTLE_SECONDS} s after the drag: status {_status(page)!r}, slider {value}, shown {shown}"
        )
    time.sleep(1.0)  # a late preview must not replace the full frame
    shown = page.execute_script("clearInterval(window.__recorder); return window.__shown;")
    assert _status(page).startswith("full frame")

    value = float(page.find_element(By.CSS_SELECTOR, "#head_yaw input[type=number]").get_attribute("value"))
    assert value > 5, value  # the drag moved the slider (to the right: positive yaw)
    pose = np.zeros((6, 3), np.float32)
    pose[3, 1] = math.radians(value)  # head joint, yaw
    after = _image(_image_src(page))
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 0.5  # the image changed
    np.testing.assert_array_equal(after, _render(tmp_path, pose))

    previews = [t for t, status in shown if status.startswith("preview")]
    assert previews, shown  # the image followed the slider while it moved
    rate = len(previews) / dragged
    print(f"preview updates during a {dragged:.1f} s drag: {len(previews)} ({rate:.1f} per second)")
    if os.environ.get("ANIPORTRAIT_VIEWER_RATE"):
        result = {
            "what": f"preview images the page showed while the head-yaw slider was dragged ({DRAG_MOVES} mouse moves "
            f"of {DRAG_STEP_PIXELS:g} px, {DRAG_MOVE_SECONDS:g} s apart)",
            "drag_seconds": dragged,
            "previews_shown": len(previews),
            "previews_per_second": rate,
            "cpu_count": os.cpu_count(),
            "torch_threads": "the viewer's default (all cores)",
            "statuses": [status for _, status in shown],
        }
        with open(os.environ["ANIPORTRAIT_VIEWER_RATE"], "w") as f:
            json.dump(result, f, indent=1)
    if os.environ.get("ANIPORTRAIT_VIEWER_SCREENSHOT"):
        page.execute_script("window.scrollTo(0, 0);")
        page.save_screenshot(os.environ["ANIPORTRAIT_VIEWER_SCREENSHOT"])


def test_the_page_asks_nothing_of_other_machines(page, server):
    urls = []
    for entry in page.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls
    foreign = [u for u in urls if not u.startswith((server.rstrip("/"), "data:", "blob:"))]
    assert not foreign, foreign
