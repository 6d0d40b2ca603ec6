"""Chest-radiograph-like rendering of a study's latent state, vectorised numpy plus PIL line drawing.

Shapes are evaluated on a working grid of at most `WORK_ROWS` rows and upsampled, so the cost of a full
resolution image is dominated by resizing and JPEG encoding. Image left is the patient's right (PA/AP),
laterals face left (anterior at image left, spine at image right).

The pixels must be the same on every machine, so nothing here calls numpy's transcendental ufuncs
(`np.exp`, `np.sin`, `np.tan`, non-integer `**`), whose SIMD variants differ in the last bit from CPU to
CPU: exp and sin come from `detmath`'s tables, x^1.5 is x*sqrt(x), and a sine threshold is a phase band.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from pipeline.synthetic.detmath import exp_neg, sin_turns, tan_degrees
from pipeline.synthetic.findings import StudyState

WORK_ROWS = 200
JPEG_QUALITY = 95
_LOBE_ZONE = {"upper": 0.22, "mid": 0.5, "lower": 0.8}


def _lobe_zone(location: str) -> float:
    if "upper" in location:
        return _LOBE_ZONE["upper"]
    if "middle" in location or location == "lingula":
        return _LOBE_ZONE["mid"]
    return _LOBE_ZONE.get(location, _LOBE_ZONE["lower"])


def _sides(side: str) -> tuple[int, ...]:
    """Image-x sign of each affected side: the patient's right is image left."""
    return {"right": (-1,), "left": (1,), "bilateral": (-1, 1)}.get(side, (1,))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    h, w = shape
    small = rng.standard_normal((max(cells * h // w, 2), cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BICUBIC))


def _soft(x: np.ndarray, width: float) -> np.ndarray:
    return np.clip(0.5 + x / width, 0.0, 1.0)


class _Canvas:
    """Normalised coordinates: X in [-1, 1] across, Y in [0, 1] down; `px` converts lengths to pixels."""

    def __init__(self, rows: int, cols: int, rotation_deg: float):
        self.rows, self.cols = rows, cols
        y = (np.arange(rows, dtype=np.float32) + 0.5)[:, None] / rows
        x = ((np.arange(cols, dtype=np.float32) + 0.5)[None, :] / cols) * 2 - 1
        shear = np.float32(tan_degrees(rotation_deg))
        self.X = x + (y - 0.5) * shear
        self.Y = np.broadcast_to(y, (rows, cols))
        self.img = np.zeros((rows, cols), dtype=np.float32)
        self.devices = Image.new("F", (cols, rows), 0.0)

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return ((x + 1) / 2 * self.cols, y * self.rows)

    def px(self, length: float) -> int:
        return max(1, round(length * self.rows))

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.X - cx) / rx) ** 2 + ((self.Y - cy) / ry) ** 2

    def line(self, points: list[tuple[float, float]], width: float, value: float = 1.0) -> None:
        ImageDraw.Draw(self.devices).line([self.xy(*p) for p in points], fill=value, width=self.px(width))


def _frontal(state: StudyState, c: _Canvas, rng: np.random.Generator) -> None:
    a, f, X, Y = state.anatomy, state.findings, c.X, c.Y
    emph = "emphysema" in state.others
    tw = a.body_width * 0.92
    yt, lh = 0.12, a.lung_height * (1.08 if emph else 1.0)
    body_half = np.where(Y < 0.1, 0.3, tw * (1.02 + 0.08 * (Y - 0.5)))
    c.img[:] = 0.06 + 0.46 * _soft(body_half - np.abs(X), 0.03)
    rx, ry = 0.37 * tw, lh / 2
    lungs, domes = {}, {}
    for s in (-1, 1):
        cx, cy = s * 0.43 * tw, yt + ry
        base = yt + lh - (0.025 if s < 0 else 0.0)
        u = np.clip((X - cx) / rx, -1, 1)
        dome = base - (0.02 if emph else 0.065) * (1 - u**2) - 0.02 * (s * u < 0)
        lung = _soft(1 - c.ellipse(cx, cy, rx, ry * 1.15), 0.15) * _soft(dome - Y, 0.01) * (yt - 0.02 < Y)
        lungs[s], domes[s] = lung.astype(np.float32), base
    lung = np.maximum(lungs[-1], lungs[1])
    markings = 0.05 * _smooth_noise(rng, X.shape, 48) + 0.06 * exp_neg(
        ((np.abs(X) - 0.22 * tw) ** 2 + (Y - yt - 0.45 * lh) ** 2) / 0.02
    )
    dark = 0.34 if emph else 0.30
    ptx_free = np.ones_like(lung)
    if "pneumothorax" in f:
        p = f["pneumothorax"]
        s = _sides(p.side)[0]
        frac = {"tiny": 0.06, "small": 0.12, "moderate": 0.22, "large": 0.35}[p.size]
        cx = s * 0.43 * tw - s * frac * rx * 0.8
        inner = c.ellipse(cx, yt + ry + frac * ry * 0.9, rx * (1 - frac), ry * (1 - frac * 0.7) * 1.15)
        collapsed = _soft(1 - inner, 0.1)
        gap = lungs[s] * (1 - collapsed)
        ptx_free = 1 - gap
        c.img += 0.3 * lungs[s] * collapsed * exp_neg(((inner - 1) / 0.05) ** 2)  # visceral pleural edge
        c.img -= 0.06 * gap
    c.img -= dark * lung
    c.img += markings * lung * ptx_free
    # mediastinum, heart, spine
    mw = a.mediastinum_width * (
        1 + {"mild": 0.35, "moderate": 0.55, "severe": 0.8}[f["mediastinum"].size]
        if "mediastinum" in f
        else 1.0
    )
    c.img += 0.3 * _soft(mw / 2 - np.abs(X - 0.02), 0.03) * (Y > 0.05) * (yt + 0.7 * lh > Y)
    ctr = a.heart_ctr + (
        {"mild": 0.07, "moderate": 0.12, "severe": 0.17}[f["cardiomegaly"].size]
        if "cardiomegaly" in f
        else 0.0
    )
    hw = ctr * tw
    heart = _soft(1 - c.ellipse(0.35 * hw, yt + 0.74 * lh, hw, 0.15 + 0.2 * (ctr - 0.42)), 0.12)
    c.img = c.img * (1 - heart) + heart * np.maximum(c.img, 0.56)
    spine_x = 0.07 * sin_turns((Y - 0.1) / 1.4) if "scoliosis" in state.others else 0.0
    spine = _soft(0.065 - np.abs(X - spine_x), 0.02) * (Y > 0.04)
    vertebra = (Y * 17) % 1  # sin(2π·17Y) > 0.5 exactly where this phase lies in (1/12, 5/12)
    c.img += spine * (0.08 + 0.05 * ((vertebra > 1 / 12) & (vertebra < 5 / 12)))
    # ribs and clavicles
    across = np.abs(X) / tw
    phase = (Y - 0.09 - 0.13 * across * np.sqrt(across)) / (lh / 9.5)
    k = np.floor(phase)
    band = ((phase - k) < 0.28) & (k >= 0) & (k < 10) & (np.abs(X) < tw) & (yt + lh + 0.03 > Y)
    if "fracture" in f:
        fr = f["fracture"]
        s = _sides(fr.side)[0]
        band &= ~((k == fr.rib - 1) & (np.abs(X - s * 0.62 * tw) < 0.025))
    c.img += 0.07 * band * (0.3 + 0.7 * lung) * (1 - 0.6 * heart)
    for s in (-1, 1):
        d = np.abs((Y - 0.11) - (0.06 / (0.55 * tw)) * (s * X - 0.1)) * (s * X > 0.06) * (s * X < 0.65 * tw)
        c.img += 0.16 * ((d < 0.012) & (s * X > 0.06) & (s * X < 0.65 * tw))
    c.img -= 0.22 * (c.ellipse(0.42 * tw, domes[1] + 0.05, 0.1, 0.035) < 1)  # gastric bubble
    _frontal_findings(state, c, lungs, tw, yt, lh, rng)


def _blob(c: _Canvas, cx: float, cy: float, r: float, rng: np.random.Generator, patchy: float) -> np.ndarray:
    g = exp_neg(c.ellipse(cx, cy, r, r * 0.8))
    return g * (1 + patchy * _smooth_noise(rng, c.X.shape, 24))


def _frontal_findings(
    state: StudyState, c: _Canvas, lungs: dict, tw: float, yt: float, lh: float, rng
) -> None:
    f, X, Y = state.findings, c.X, c.Y
    rx = 0.37 * tw
    if "effusion" in f:
        e = f["effusion"]
        height = {"small": 0.07, "moderate": 0.16, "large": 0.3}[e.size] * lh
        for s in _sides(e.side):
            lateral = np.clip(s * (X - s * 0.43 * tw) / rx, 0, 1)
            level = yt + lh - height - 0.06 * lateral
            c.img += 0.38 * lungs[s] * _soft(Y - level, 0.02)
    for name, amp, r, patchy in (
        ("consolidation", 0.34, 0.13, 0.4),
        ("pneumonia", 0.3, 0.14, 0.6),
        ("opacity", 0.2, 0.16, 0.9),
    ):
        if name in f:
            fi = f[name]
            y = yt + lh * _lobe_zone(fi.location)
            for s in _sides(fi.side):
                c.img += amp * lungs[s] * np.clip(_blob(c, s * 0.45 * tw, y, r, rng, patchy), 0, 1.5)
    if "atelectasis" in f:
        at = f["atelectasis"]
        for s in _sides(at.side):
            y0 = yt + lh * 0.88
            d = np.abs(Y - y0 - 0.08 * (X - s * 0.4 * tw))
            c.img += (
                0.28
                * lungs[s]
                * (d < 0.01 + 0.004 * (at.size == "moderate"))
                * (np.abs(X - s * 0.4 * tw) < 0.5 * rx)
            )
    if "edema" in f:
        amp = {"mild": 0.12, "moderate": 0.2, "severe": 0.3}[f["edema"].size]
        lung = np.maximum(lungs[-1], lungs[1])
        haze = exp_neg((np.abs(X) - 0.2 * tw) ** 2 / 0.05 + (Y - yt - 0.5 * lh) ** 2 / 0.04)
        kerley = ((Y * 90) % 1 < 0.18) & (np.abs(X) > 0.65 * tw) & (yt + 0.65 * lh < Y)
        c.img += lung * (amp * haze + 0.5 * amp * kerley)
    if "lesion" in f:
        le = f["lesion"]
        s = _sides(le.side)[0]
        r = le.size_mm / 300 * tw
        c.img += (
            0.45
            * lungs[s]
            * _soft(1 - c.ellipse(s * 0.45 * tw, yt + lh * _lobe_zone(le.location), r, r), 0.3)
        )
    if "pleural_other" in f:
        po = f["pleural_other"]
        for s in _sides(po.side):
            d = c.ellipse(s * 0.43 * tw, yt + lh / 2, rx, lh / 2 * 1.15)
            zone = yt + 0.3 * lh > Y if po.location == "apical" else np.abs(Y - yt - 0.5 * lh) < 0.2 * lh
            c.img += 0.25 * lungs[s] * ((d > 0.78) & zone)
    if "granuloma" in state.others:
        g = state.others["granuloma"]
        c.img += 0.6 * (
            c.ellipse(_sides(g.side)[0] * 0.5 * tw, yt + lh * _LOBE_ZONE[g.location], 0.012, 0.01) < 1
        )
    if "calcification" in state.others:
        d = c.ellipse(0.1, yt + 0.1 * lh, 0.05, 0.03)
        c.img += 0.3 * ((d > 0.7) & (d < 1) & (X > 0.1))
    carina = yt + 0.27 * lh
    for kind in state.devices:
        if kind == "ett":
            c.line([(0.0, 0.0), (0.0, carina - 0.04)], 0.008)
        elif kind == "ng":
            c.line([(0.02, 0.0), (0.02, yt + 0.6 * lh), (0.35 * tw, yt + lh + 0.07)], 0.006)
        elif kind == "cvc":
            c.line([(-0.25, 0.02), (-0.1, 0.15), (-0.05, carina + 0.03)], 0.005)
        elif kind == "picc":
            c.line(
                [(0.95 * tw, yt + 0.1), (0.5 * tw, yt + 0.05), (0.08, yt + 0.08), (-0.04, carina + 0.05)],
                0.004,
            )
        elif kind == "pacemaker":
            x0, y0 = 0.55 * tw, yt + 0.05
            ImageDraw.Draw(c.devices).rectangle([c.xy(x0, y0), c.xy(x0 + 0.14, y0 + 0.06)], fill=1.0)
            c.line([(x0, y0 + 0.03), (0.1, yt + 0.2), (-0.02, yt + 0.55 * lh), (0.1, yt + 0.78 * lh)], 0.004)
        elif kind == "sternal_wires":
            draw = ImageDraw.Draw(c.devices)
            for y in np.arange(yt + 0.12, yt + 0.55 * lh, 0.06):
                draw.ellipse([c.xy(-0.02, y), c.xy(0.02, y + 0.02)], outline=1.0, width=c.px(0.004))


def _lateral(state: StudyState, c: _Canvas, rng: np.random.Generator) -> None:
    a, f, X, Y = state.anatomy, state.findings, c.X, c.Y
    c.img[:] = 0.06 + 0.48 * _soft(0.88 - c.ellipse(0.0, 0.52, 0.92, 0.62), 0.1)
    yt, lh = 0.12, a.lung_height
    base = yt + lh + 0.04 * X  # posterior sulcus lowest
    lung = (_soft(1 - c.ellipse(0.05, yt + lh / 2, 0.62, lh / 2 * 1.1), 0.15) * _soft(base - Y, 0.01)).astype(
        np.float32
    )
    c.img -= 0.27 * lung
    c.img += 0.05 * _smooth_noise(rng, X.shape, 40) * lung
    ctr = a.heart_ctr + (
        {"mild": 0.07, "moderate": 0.12, "severe": 0.17}[f["cardiomegaly"].size]
        if "cardiomegaly" in f
        else 0.0
    )
    heart = _soft(1 - c.ellipse(-0.3, yt + 0.72 * lh, 0.7 * ctr, 0.14 + 0.3 * (ctr - 0.42)), 0.12)
    c.img += 0.32 * heart
    spine = _soft(0.09 - np.abs(X - 0.62 - 0.03 * Y), 0.02)
    c.img += spine * (0.28 + 0.08 * ((Y * 19) % 1 < 0.2))
    c.img += 0.2 * (np.abs(X + 0.62 - 0.05 * Y) < 0.012) * (yt < Y) * (yt + 0.5 * lh > Y)  # sternum
    if "effusion" in f:
        height = {"small": 0.06, "moderate": 0.14, "large": 0.26}[f["effusion"].size] * lh
        c.img += 0.35 * lung * _soft(Y - (base - height - 0.1 * np.clip(X, 0, 1)), 0.02)
    for name, amp in (("consolidation", 0.3), ("pneumonia", 0.26), ("opacity", 0.18)):
        if name in f:
            y = yt + lh * _lobe_zone(f[name].location)
            c.img += amp * lung * np.clip(_blob(c, 0.25, y, 0.16, rng, 0.5), 0, 1.5)
    if "edema" in f:
        c.img += 0.15 * lung * exp_neg((X - 0.1) ** 2 / 0.08 + (Y - yt - 0.5 * lh) ** 2 / 0.05)
    if "lesion" in f:
        le = f["lesion"]
        r = le.size_mm / 300 * 0.9
        c.img += 0.4 * lung * _soft(1 - c.ellipse(0.1, yt + lh * _lobe_zone(le.location), r, r), 0.3)
    if state.devices:
        c.line([(0.3, 0.0), (0.32, yt + 0.3 * lh)], 0.007)


def render(state: StudyState, view: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (rows, cols) histogram-equalised radiograph of `state` seen from `view`."""
    return equalise(render_float(state, view, rows, cols, rng))


def render_float(state: StudyState, view: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """The float32 (rows, cols) intensities before quantisation (tests hash them: every bit counts)."""
    wr = min(rows, WORK_ROWS)
    wc = max(8, round(cols * wr / rows))
    c = _Canvas(wr, wc, state.anatomy.rotation_deg + (0.0 if view != "AP" else float(rng.normal(0, 1.5))))
    if "LAT" in view or view == "LL":
        _lateral(state, c, rng)
    else:
        _frontal(state, c, rng)
    img = c.img * state.anatomy.brightness + 0.9 * np.asarray(c.devices) * (np.asarray(c.devices) > c.img)
    img += 0.015 * _smooth_noise(rng, img.shape, 12) + 0.008 * rng.standard_normal(
        img.shape, dtype=np.float32
    )
    if (wr, wc) != (rows, cols):
        img = np.asarray(Image.fromarray(img.astype(np.float32), "F").resize((cols, rows), Image.BILINEAR))
        img = img + 0.01 * rng.standard_normal(img.shape, dtype=np.float32)
    return img


def equalise(img: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] → uint8 with a flat histogram, as exported radiographs look."""
    q = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    cdf = np.cumsum(np.bincount(q.ravel(), minlength=256)).astype(np.float64)
    lut = np.round((cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1.0) * 255.0).astype(np.uint8)
    return lut[q]


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
