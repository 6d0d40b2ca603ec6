"""`medprobclip serve` on a real tiny trained model, driven by Debian's chromium headless through selenium:
upload a synthetic X-ray, read the hits and the abstention banner, keep a screenshot.

Chromium missing is a failure (install it with `make browser`), not a silent skip, unless
MEDPROBCLIP_SKIP_BROWSER=1 opts out. The screenshot lands in the test's tmp_path and, when
MEDPROBCLIP_TEST_ARTIFACTS names a folder, is copied there (CI keeps it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SKIP = os.environ.get("MEDPROBCLIP_SKIP_BROWSER", "").strip().lower() in {"1", "true", "yes"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SKIP, reason="MEDPROBCLIP_SKIP_BROWSER set: browser test opted out"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def api_retrieve(server: str, image: Path, k: int) -> dict:
    import httpx

    files = {"image": (image.name, image.read_bytes(), "image/png")}
    response = httpx.post(server + "/api/retrieve", files=files, data={"k": str(k)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def chromium():
    """A headless chromium session; a clear failure when the browser is not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: run `make browser` (apt-get install chromium chromium-driver) "
            "or set MEDPROBCLIP_SKIP_BROWSER=1 to opt out"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def server():
    from test_mlflow_model import tiny_retrieval_model

    port = free_port()
    model = tiny_retrieval_model("medprobclip")  # shared with the MLflow model tests of the session
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/model", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_upload_in_a_real_browser_shows_hits_banner_and_notice(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from pipeline.retrieval.pyfunc import synthetic_xray

    image = tmp_path / "synthetic-xray.png"
    synthetic_xray(96).save(image)
    driver = chromium()
    try:
        driver.get(server + "/")
        assert "Research use only" in driver.find_element(By.ID, "notice").text
        method = driver.find_element(By.ID, "method").text
        driver.find_element(By.ID, "image").send_keys(str(image))
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys("3")
        driver.find_element(By.ID, "submit").click()
        banner = WebDriverWait(driver, 120).until(EC.presence_of_element_located((By.ID, "banner")))
        abstain, banner_text = banner.get_attribute("data-abstain"), banner.text
        rows = driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr.hit")
        studies = [r.find_element(By.CSS_SELECTOR, ".study").text for r in rows]
        scores = [float(r.find_element(By.CSS_SELECTOR, ".score").text) for r in rows]
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        bad = tmp_path / "notes.png"
        bad.write_text("not an image at all")
        driver.find_element(By.ID, "image").send_keys(str(bad))
        driver.find_element(By.ID, "submit").click()
        error = WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.ID, "error"))).text
    finally:
        driver.quit()
    assert method and len(rows) == 3 and all(s.isdigit() for s in studies) and len(set(studies)) == 3
    assert scores == sorted(scores, reverse=True)
    api = api_retrieve(server, image, k=3)  # the page shows exactly what the JSON route answers
    assert [str(h["study_id"]) for h in api["hits"]] == studies
    assert abstain == str(api["abstain"]).lower()
    assert ("Abstained" in banner_text) == api["abstain"] and ("Answered" in banner_text) != api["abstain"]
    assert shot.stat().st_size > 10_000
    assert "not a JPEG or PNG" in error and "Traceback" not in error
    if os.environ.get("MEDPROBCLIP_TEST_ARTIFACTS"):
        target = Path(os.environ["MEDPROBCLIP_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, target / "serve.png")
