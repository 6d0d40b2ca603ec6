"""Per-patient anatomy and per-study latent clinical state.

The state is the single source of truth: the report text, the shipped labels (through the mentions the
text emits) and the rendered image are all derived from it, so text and pixels always agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.synthetic.rng import Rng

SIDES = ("left", "right", "bilateral")
LOBES = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
)
ZONES = ("upper", "mid", "lower")
SEVERITIES = ("mild", "moderate", "severe")
SIZES = ("small", "moderate", "large")
DEVICE_KINDS = ("ett", "ng", "cvc", "picc", "pacemaker", "sternal_wires")
OTHER_KINDS = ("emphysema", "scoliosis", "granuloma", "hernia", "degenerative", "calcification")

# P(present | abnormal study), portable (AP) studies sicker; tuned toward data-facts' train prevalences.
_FINDING_P = {
    "cardiomegaly": (0.26, 0.32),
    "mediastinum": (0.07, 0.10),
    "effusion": (0.24, 0.45),
    "consolidation": (0.05, 0.08),
    "pneumonia": (0.09, 0.11),
    "atelectasis": (0.26, 0.40),
    "edema": (0.12, 0.28),
    "opacity": (0.22, 0.25),
    "pneumothorax": (0.05, 0.07),
    "lesion": (0.06, 0.03),
    "fracture": (0.03, 0.02),
    "pleural_other": (0.025, 0.01),
}
FINDING_NAMES = tuple(_FINDING_P)
_P_ABNORMAL = {"train": 0.66, "validate": 0.66, "test": 0.85}
# Findings a radiologist would hedge on more often than not.
_P_HEDGED = {"pneumonia": 0.45, "mediastinum": 0.45, "consolidation": 0.15, "lesion": 0.15}


@dataclass(frozen=True)
class Anatomy:
    """Patient-specific body habitus, stable across all of a patient's studies."""

    body_width: float
    heart_ctr: float
    rotation_deg: float
    lung_height: float
    mediastinum_width: float
    brightness: float
    sex: str
    age: int


@dataclass(frozen=True)
class Finding:
    """One abnormality as it truly is (side/size/location), plus how the reader will word it."""

    name: str
    side: str = ""
    size: str = ""
    location: str = ""
    size_mm: int = 0
    rib: int = 0
    status: str = "new"
    hedged: bool = False


@dataclass(frozen=True)
class StudyState:
    anatomy: Anatomy
    findings: dict[str, Finding] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    others: dict[str, Finding] = field(default_factory=dict)
    has_prior: bool = False
    portable: bool = False

    @property
    def abnormal(self) -> bool:
        return bool(self.findings or self.others)

    def to_json_dict(self) -> dict:
        return {
            "anatomy": dict(vars(self.anatomy)),
            "findings": {k: dict(vars(v)) for k, v in sorted(self.findings.items())},
            "others": {k: dict(vars(v)) for k, v in sorted(self.others.items())},
            "devices": list(self.devices),
            "has_prior": self.has_prior,
            "portable": self.portable,
        }


def create_anatomy(rng: Rng) -> Anatomy:
    sex = str(rng.choice(["M", "F"]))
    return Anatomy(
        body_width=float(rng.uniform(0.80, 0.95)),
        heart_ctr=float(rng.uniform(0.40, 0.47)),
        rotation_deg=float(rng.normal(0.0, 2.0)),
        lung_height=float(rng.uniform(0.58, 0.68)),
        mediastinum_width=float(rng.uniform(0.15, 0.19)),
        brightness=float(rng.uniform(0.9, 1.1)),
        sex=sex,
        age=int(rng.integers(20, 95)),
    )


def _side(rng: Rng, p_bilateral: float = 0.2) -> str:
    if rng.random() < p_bilateral:
        return "bilateral"
    return str(rng.choice(["left", "right"]))


def _status(rng: Rng, has_prior: bool) -> str:
    if not has_prior:
        return "new"
    return str(rng.choice(["new", "stable", "worse", "improved", "none"], p=[0.2, 0.25, 0.15, 0.1, 0.3]))


def _make_finding(name: str, rng: Rng, has_prior: bool) -> Finding:
    status = _status(rng, has_prior)
    hedged = rng.random() < _P_HEDGED.get(name, 0.08)
    kw: dict = {"status": status, "hedged": hedged}
    if name in ("cardiomegaly", "edema", "mediastinum"):
        kw["size"] = str(rng.choice(SEVERITIES, p=[0.55, 0.32, 0.13]))
    elif name == "effusion":
        kw |= {"side": _side(rng, 0.35), "size": str(rng.choice(SIZES, p=[0.6, 0.3, 0.1]))}
    elif name in ("consolidation", "pneumonia"):
        lobe = str(rng.choice(LOBES, p=[0.12, 0.1, 0.33, 0.1, 0.07, 0.28]))
        kw |= {"location": lobe, "side": lobe.split()[0] if lobe != "lingula" else "left"}
    elif name == "atelectasis":
        kw |= {"side": _side(rng, 0.45), "size": str(rng.choice(["minimal", "mild", "moderate"]))}
    elif name == "opacity":
        kw |= {"side": _side(rng, 0.15), "location": str(rng.choice(ZONES, p=[0.2, 0.3, 0.5]))}
    elif name == "pneumothorax":
        kw |= {"side": str(rng.choice(["left", "right"])), "size": str(rng.choice(["tiny", *SIZES]))}
    elif name == "lesion":
        mm = int(rng.choice([int(rng.integers(6, 30)), int(rng.integers(30, 70))], p=[0.75, 0.25]))
        kw |= {"side": str(rng.choice(["left", "right"])), "location": str(rng.choice(ZONES)), "size_mm": mm}
    elif name == "fracture":
        kw |= {"side": str(rng.choice(["left", "right"])), "rib": int(rng.integers(3, 10))}
    elif name == "pleural_other":
        kw |= {"side": _side(rng, 0.3), "location": str(rng.choice(["apical", "lateral"]))}
    return Finding(name=name, **kw)


def _make_other(kind: str, rng: Rng) -> Finding:
    return Finding(name=kind, side=str(rng.choice(["left", "right"])), location=str(rng.choice(ZONES)))


def sample_state(rng: Rng, anatomy: Anatomy, split: str, portable: bool, has_prior: bool) -> StudyState:
    """Draw the true findings of one study; test is enriched for abnormal studies as in MIMIC."""
    col = 1 if portable else 0
    findings: dict[str, Finding] = {}
    if rng.random() < _P_ABNORMAL.get(split, 0.66):
        for name, probs in _FINDING_P.items():
            if rng.random() < probs[col]:
                findings[name] = _make_finding(name, rng, has_prior)
        if "pneumonia" in findings and "consolidation" in findings:
            p = findings["pneumonia"]
            findings["consolidation"] = dataclasses.replace(
                findings["consolidation"], location=p.location, side=p.side
            )
    others: dict[str, Finding] = {}
    p_other = 0.06 + 0.0015 * max(anatomy.age - 50, 0)
    for kind in OTHER_KINDS:
        if rng.random() < p_other / 2.5:
            others[kind] = _make_other(kind, rng)
    p_dev = 0.52 if portable else 0.08
    devices: tuple[str, ...] = ()
    if rng.random() < p_dev:
        pool = ["ett", "ng", "cvc", "picc", "pacemaker", "sternal_wires"]
        weights = [0.3, 0.25, 0.25, 0.2, 0.15, 0.12] if portable else [0.02, 0.03, 0.1, 0.15, 0.4, 0.3]
        n = 1 + int(rng.random() < (0.5 if portable else 0.15))
        devices = tuple(pool[i] for i in sorted(rng.sample_weighted(len(pool), n, weights)))
    return StudyState(anatomy, findings, devices, others, has_prior, portable)
