"""`medprobclip serve` without a model: every class of bad upload gets a clear message on the page and a 4xx
JSON on the API; report text is escaped; the upload limit holds while the body is read. The page on a real
tiny trained model, driven by a real browser, is tests/test_serve_browser.py."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.retrieval.retriever import read_query_image
from pipeline.retrieval.serve import (
    RESEARCH_NOTICE,
    Limits,
    UploadError,
    check_upload,
    create_app,
    read_upload,
    uncertainty_position,
)


@dataclass(frozen=True)
class FakeHit:
    study_id: int
    score: float
    uncertainty: float | None
    text: str


@dataclass(frozen=True)
class FakeResult:
    query: str
    abstain: bool
    uncertainty: float
    hits: list[FakeHit]

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "abstain": self.abstain,
            "uncertainty": self.uncertainty,
            "hits": [vars(h) for h in self.hits],
        }


@dataclass
class FakeRetriever:
    """Answers with the image's mean gray level as uncertainty, so a test can steer the abstention."""

    method: str = "medprobclip"
    threshold: float = 100.0
    seen: list = field(default_factory=list)

    def read_image(self, data, name="image"):
        return read_query_image(data, 32, name)

    def search_images(self, images, k=5, names=None):
        self.seen.extend(images)
        out = []
        for image, name in zip(images, names or [f"image-{i}" for i in range(len(images))], strict=True):
            u = float(np.asarray(image).mean())  # the decoder resized it: shorter side 32
            hits = [
                FakeHit(1000 + i, 0.9 - i / 10, 0.5, f"report {i} <script>alert(1)</script>")
                for i in range(k)
            ]
            out.append(FakeResult(name, u > self.threshold, u, hits))
        return out

    def uncertainty_threshold(self, k):
        return self.threshold

    def describe(self) -> dict:
        return {
            "method": self.method,
            "threshold": self.threshold,
            "target_risk": 0.2,
            "delta": 0.1,
            "k": 5,
            "gallery": {"reports": 10},
        }


def png(mode: str = "L", size=(40, 32), value: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode != "RGB" else (value,) * 3).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(mode: str = "L", size=(40, 32)) -> bytes:
    buf = io.BytesIO()
    color = {"L": 60, "RGB": (60, 60, 60), "CMYK": (0, 0, 0, 200)}[mode]
    Image.new(mode, size, color).save(buf, format="JPEG")
    return buf.getvalue()


def noise_png(size: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming width × height gray pixels with (almost) no data: what a decompression
    bomb's header looks like, at no cost to build."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def client():
    retriever = FakeRetriever()
    with TestClient(create_app(retriever, Limits(max_bytes=200_000, max_pixels=1_000_000))) as c:
        c.retriever = retriever
        yield c


BAD_UPLOADS = {
    "empty": (b"", 400, "empty"),
    "not an image": (b"<html>hello</html>" * 10, 415, "not a JPEG or PNG"),
    "a GIF": (b"GIF89a" + b"\0" * 40, 415, "not a JPEG or PNG"),
    "CMYK": (jpeg("CMYK"), 415, "CMYK"),
    "16-bit": (png("I;16", value=3000), 415, "16-bit"),
    "truncated header": (jpeg("L", (200, 200))[:300], 400, "truncated"),
    "truncated pixels": (noise_png()[:-2000], 400, "truncated"),
    "too many pixels": (bomb_png(2000, 1000), 413, "pixels"),
    "decompression bomb": (bomb_png(), 413, "too many pixels|pixels"),
    "too many bytes": (b"\xff\xd8\xff" + b"\0" * 250_000, 413, "limit"),
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_each_bad_upload_gets_a_clear_message_on_the_page_and_a_4xx_json(client, name):
    data, status, message = BAD_UPLOADS[name]
    files = {"image": ("x.png", data, "application/octet-stream")}
    api = client.post("/api/retrieve", files=files)
    assert api.status_code == status, api.text
    assert api.headers["content-type"].startswith("application/json")
    assert set(api.json()) == {"error"}
    import re

    assert re.search(message, api.json()["error"]), api.json()
    page = client.post("/", files=files)
    assert page.status_code == status and 'id="error"' in page.text
    assert "Traceback" not in page.text and RESEARCH_NOTICE.split(".")[0] in page.text
    assert not client.retriever.seen  # the model never saw a bad upload


def test_read_upload_accepts_gray_rgb_and_palette_and_returns_8bit_gray():
    for data in (png("L"), png("RGB"), jpeg("L"), jpeg("RGB"), png("P"), png("RGBA"), png("1", value=1)):
        image = read_upload(FakeRetriever(), data, "x")
        assert image.mode == "L" and image.size == (40, 32)


def test_missing_file_field_and_bad_k_are_refused(client):
    assert client.post("/api/retrieve", data={"k": "3"}).status_code == 400
    for k in ("0", "51", "x"):
        r = client.post("/api/retrieve", files={"image": ("a.png", png(), "image/png")}, data={"k": k})
        assert r.status_code == 400 and "k must" in r.json()["error"]


def test_a_chunked_upload_without_content_length_is_cut_off_while_reading(client):
    def body():
        boundary = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        yield boundary
        for _ in range(100):  # 100 × 10 kB > 200 kB limit; never announced in a header
            yield b"\0" * 10_000
        yield b"\r\n--b--\r\n"

    r = client.post(
        "/api/retrieve", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413 and "upload exceeds" in r.json()["error"]


def test_a_good_upload_shows_hits_escaped_with_the_banner_and_the_json_shape(client):
    files = {"image": ("chest.png", png(value=50), "image/png")}
    api = client.post("/api/retrieve", files=files, data={"k": "3"})
    assert api.status_code == 200
    body = api.json()
    assert set(body) == {"query", "abstain", "uncertainty", "hits"} and body["query"] == "chest.png"
    assert len(body["hits"]) == 3 and body["abstain"] is False and body["uncertainty"] == 50.0
    page = client.post("/", files=files, data={"k": "2"})
    assert page.status_code == 200 and page.text.count('class="hit"') == 2
    assert (
        "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    )
    assert 'data-abstain="false"' in page.text
    bright = client.post("/", files={"image": ("b.png", png(value=200), "image/png")})
    assert 'data-abstain="true"' in bright.text and "Abstained" in bright.text
    assert client.get("/api/model").json()["method"] == "medprobclip"
    index = client.get("/")
    assert index.status_code == 200 and "Research use only" in index.text and 'id="hits"' not in index.text


def test_a_filename_with_markup_is_escaped(client):
    r = client.post("/", files={"image": ("<img src=x onerror=alert(1)>.png", png(), "image/png")})
    assert r.status_code == 200 and "<img src=x" not in r.text


def test_uncertainty_bar_puts_the_threshold_in_the_middle_and_is_monotone():
    assert uncertainty_position(1.0, 1.0) == 0.5
    values = [uncertainty_position(u, 2.0) for u in (-5.0, 0.0, 1.0, 2.0, 3.0, 50.0)]
    assert values == sorted(values) and values[0] < 0.01 and values[-1] > 0.99
    assert uncertainty_position(-0.3, -0.5) > 0.5  # negative units (e.g. −top-1 similarity) work too
    assert uncertainty_position(1.0, None) == 0.0


def test_upload_error_is_a_pipeline_error_with_a_status():
    with pytest.raises(UploadError) as info:
        check_upload(b"")
    assert info.value.status == 400


def test_serve_command_refuses_a_missing_model_or_bad_options_in_one_line(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["serve"]) == 2 and "--method" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--k", "0"]) == 2 and "--k" in capsys.readouterr().err


def test_only_loopback_hosts_bind_without_a_warning():
    from pipeline.retrieval.serve import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")
