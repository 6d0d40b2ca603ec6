"""The README's screenshot of `medprobclip serve` (docs/serve.png): start the page on a trained model, upload
an X-ray in headless chromium (Debian's chromium + chromium-driver: `make browser`), save the page.

    python scripts/screenshot_serve.py --model models/medprobclip/seed42 --image <a test-split JPEG>

Without --image it uploads a synthetic X-ray-like picture (never a real one: the PNG goes into the repo).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, timeout: float = 180.0) -> subprocess.Popen:
    """`medprobclip serve` in a child process, returned once its API answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model", model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: the server exited: {process.stderr.read().strip()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2):
                return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"error: the server did not answer within {timeout:.0f} s")


def browser(width: int = 1100, height: int = 1300):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise SystemExit("error: chromium/chromedriver missing: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def capture(url: str, image: Path, out: Path, k: int | None = None, height: int = 1300) -> dict:
    """Upload `image` on the page at `url`, save a screenshot of the result to `out`; what the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(EC.presence_of_element_located((By.ID, "image")))
        driver.find_element(By.ID, "image").send_keys(str(image.resolve()))
        if k is not None:
            field = driver.find_element(By.ID, "k")
            field.clear()
            field.send_keys(str(k))
        driver.find_element(By.ID, "submit").click()
        banner = WebDriverWait(driver, 120).until(EC.presence_of_element_located((By.ID, "banner")))
        rows = driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr.hit")
        shown = {
            "method": driver.find_element(By.ID, "method").text,
            "notice": driver.find_element(By.ID, "notice").text,
            "abstain": banner.get_attribute("data-abstain") == "true",
            "banner": banner.text,
            "studies": [r.find_element(By.CSS_SELECTOR, ".study").text for r in rows],
            "scores": [float(r.find_element(By.CSS_SELECTOR, ".score").text) for r in rows],
        }
        page = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1100, min(page + 40, height))  # the top of a long hit list is enough
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    return shown


def with_gallery(model: Path, tmp: Path, params_path: str) -> Path:
    """`model` if it has its retrieval bundle; else a copy of its best/ in `tmp` with a bundle built from
    the pipeline's data (params.yaml), leaving the workspace's DVC outputs untouched."""
    from pipeline.config import read_params
    from pipeline.retrieval.bundle import BUNDLE_DIR
    from pipeline.retrieval.gallery import gallery_from_params

    if (model / BUNDLE_DIR / "retrieval.json").is_file():
        return model
    data = read_params(params_path).get("data") or {}
    copy = tmp / model.parent.name / model.name
    shutil.copytree(model / "best", copy / "best")
    gallery_from_params(
        params_path, copy, data["shards_dir"], data["studies_dir"], tokenizer=data["tokenizer_dir"],
        method=model.parent.name,
    )  # fmt: skip
    print(f"built a retrieval bundle for {model} in {copy} (the gallery stage has not run)")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models/medprobclip/seed42", help="model folder with its gallery")
    parser.add_argument("--image", help="JPEG/PNG to upload (default: a synthetic X-ray-like image)")
    parser.add_argument("--out", default="docs/serve.png")
    parser.add_argument(
        "--k", type=int, help="hits to ask for (default: the k the threshold is calibrated at)"
    )
    parser.add_argument("--params", default="params.yaml", help="data paths, when the bundle must be built")
    parser.add_argument(
        "--height", type=int, default=1000, help="window height in px (long hit lists are cut)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = with_gallery(Path(args.model), Path(tmp), args.params)
        image = Path(args.image) if args.image else Path(tmp) / "synthetic-xray.png"
        if not args.image:
            from pipeline.retrieval.upload import synthetic_xray

            synthetic_xray(256).save(image)
        port = free_port()
        server = start_server(str(model), port)
        try:
            shown = capture(f"http://127.0.0.1:{port}/", image, Path(args.out), args.k, args.height)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}: {shown['method']}, {len(shown['studies'])} hits, abstain={shown['abstain']}")


if __name__ == "__main__":
    main()
