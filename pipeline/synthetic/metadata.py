"""Patients, studies and images: ids, dates, splits and the DICOM-derived metadata columns.

Conventions follow data-facts.md: random (not chronological) 8-digit ids, per-patient year shift into
2100–2200 with real intervals, StudyTime as a float HHMMSS.fff, a view mix matching the release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from pipeline.mimic import schema
from pipeline.synthetic.rng import Rng

# (views, P(study)) fitted so the image-level view mix is AP 39%, PA 25.5%, LATERAL 22%, LL 9.3%,
# blank 4.2%, 1.63 images per study and 4% of studies without a frontal image.
STUDY_VIEWS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("PA", "LATERAL"), 0.2106),
    (("PA", "LL"), 0.1020),
    (("PA", "LATERAL", "LATERAL"), 0.0060),
    (("PA",), 0.0153),
    (("PA", "PA", "LATERAL"), 0.0294),
    (("PA", ""), 0.0085),
    (("AP",), 0.4035),
    (("AP", "LATERAL"), 0.0689),
    (("AP", "LL"), 0.0303),
    (("AP", "AP"), 0.0356),
    (("AP", ""), 0.0117),
    (("LATERAL",), 0.0037),
    (("",), 0.0165),
    (("", ""), 0.0147),
    (("AP", "AP", "LATERAL"), 0.0259),
    (("PA", "LL", "LATERAL"), 0.0124),
    (("LL",), 0.0051),
)
RARE_VIEWS = schema.RARE_VIEWS
P_RARE_VIEW = 6e-5
VIEW_MEANING = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
    "LAO": "left anterior oblique",
    "RAO": "right anterior oblique",
    "LPO": "left posterior oblique",
}
# Real image sizes (rows, cols) before `image_scale`.
FULL_SIZE = {"AP": (2705, 2539), "default": (3056, 2544)}


@dataclass(frozen=True)
class ImageMeta:
    dicom_id: str
    view: str
    rows: int
    cols: int
    view_meaning: str | None
    orientation: str | None


def draw_unique(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    """`n` distinct random integers in [low, high), in random order (ids must not be chronological)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        cand = rng.integers(low, high, size=int((n - out.size) * 1.1) + 16)
        merged = np.concatenate([out, cand])
        _, first = np.unique(merged, return_index=True)
        out = merged[np.sort(first)]
    return out[:n]


def studies_per_patient(rng: np.random.Generator, n_patients: int) -> np.ndarray:
    """Skewed counts with mean ≈ 3.5 (many patients with one study, a long tail of frequent flyers)."""
    return 1 + np.minimum(rng.negative_binomial(0.6, 0.6 / 3.1, size=n_patients), 120)


def assign_splits(rng: np.random.Generator, n_patients: int, fractions: dict[str, float]) -> np.ndarray:
    """Patient-level split labels with exact patient counts per fraction (disjoint by construction)."""
    n_test = round(fractions["test"] * n_patients)
    n_val = round(fractions["validate"] * n_patients)
    labels = np.array(["train"] * n_patients, dtype=object)
    order = rng.permutation(n_patients)
    labels[order[:n_test]] = "test"
    labels[order[n_test : n_test + n_val]] = "validate"
    return labels


def patient_dates(rng: Rng, n_studies: int) -> tuple[list[int], list[float]]:
    """Dates (YYYYMMDD, shifted into 2100–2200) and times (HHMMSS.fff) of one patient's studies."""
    day = date(rng.integers(2105, 2180), 1, 1) + timedelta(days=rng.integers(0, 365))
    dates = []
    for j in range(n_studies):
        gap = math.ceil(rng.exponential(90.0)) if j else 0
        if rng.random() < 0.15:  # a same-day repeat
            gap = 0
        day += timedelta(days=gap)
        dates.append(day.year * 10000 + day.month * 100 + day.day)
    times = []
    for s in sorted(rng.uniform(0, 86400) for _ in range(n_studies)):
        h, rem = divmod(int(s * 1000), 3_600_000)
        m, rem = divmod(rem, 60_000)
        times.append(round(h * 10000 + m * 100 + rem / 1000, 3))
    return dates, times


def procedure_for(views: tuple[str, ...], rng: Rng) -> str | None:
    if rng.random() < 0.03:
        return None
    if "PA" in views:
        opts = ["CHEST (PA AND LAT)"] * 12 + ["CHEST (PRE-OP PA AND LAT)", "CHEST (PA AND LAT) AND RIBS"]
        return opts[int(rng.integers(len(opts)))] if len(views) > 1 else "CHEST (SINGLE VIEW)"
    if "AP" in views:
        opts = ["CHEST (PORTABLE AP)"] * 10 + [
            "CHEST PORT. LINE PLACEMENT",
            "CHEST (SINGLE VIEW)",
            "BABYGRAM CHEST",
        ]
        return opts[int(rng.integers(len(opts)))]
    return "CHEST (PA AND LAT)" if rng.random() < 0.7 else "CHEST (SINGLE VIEW)"


_VIEW_SETS = [views for views, _ in STUDY_VIEWS]
_VIEW_P = [p for _, p in STUDY_VIEWS]


def sample_views(rng: Rng, force_rare: bool) -> tuple[str, ...]:
    views = list(rng.choice(_VIEW_SETS, _VIEW_P))
    for i in range(len(views)):
        if (force_rare and i == len(views) - 1) or rng.random() < P_RARE_VIEW:
            views[i] = RARE_VIEWS[rng.integers(len(RARE_VIEWS))]
    return tuple(views)


def dicom_id(rng: Rng) -> str:
    g = rng.getrandbits
    return f"{g(32):08x}-{g(32):08x}-{g(32):08x}-{g(32):08x}-{g(32):08x}"


def image_meta(view: str, rng: Rng, image_scale: float, portable: bool) -> ImageMeta:
    rows, cols = FULL_SIZE["AP" if view == "AP" else "default"]
    rows = round((rows + rng.integers(-160, 161)) * image_scale)
    cols = round((cols + rng.integers(-120, 121)) * image_scale)
    meaning = VIEW_MEANING.get(view) if view and rng.random() > 0.01 else None
    if view in ("PA", "LATERAL", "LL"):
        orientation = "Erect"
    elif view == "AP":
        orientation = "Recumbent" if portable and rng.random() < 0.6 else "Erect"
    else:
        orientation = None
    if rng.random() < 0.03:
        orientation = None
    return ImageMeta(dicom_id(rng), view, max(rows, 32), max(cols, 32), meaning, orientation)
