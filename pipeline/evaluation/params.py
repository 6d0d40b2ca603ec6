"""The ``evaluate`` params section: every protocol choice of methods.md ("Evaluation protocol") by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.transforms import CORRUPTIONS, SEVERITIES

CONFIDENCE_KINDS = ("auto", "variance", "top1", "margin")
QUERY_TEXTS = {"findings": "findings_then_impression", "longest": "longest"}


@dataclass(frozen=True)
class ZeroShotParams:
    template: str = "a chest X-ray with {}"  # MedProbCLIP protocol: argmax over one prompt per class
    positive: str = "{}"  # CLIP-XRad protocol: a positive and a negative prompt per class
    negative: str = "no {}"


@dataclass(frozen=True)
class RobustnessParams:
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES

    def __post_init__(self) -> None:
        unknown = set(self.corruptions) - set(CORRUPTIONS)
        if unknown:
            raise ValueError(f"unknown corruptions {sorted(unknown)}; choose from {CORRUPTIONS}")
        if set(self.severities) - set(SEVERITIES):
            raise ValueError(f"severities must be drawn from {SEVERITIES}, got {self.severities}")


@dataclass(frozen=True)
class ProbeParams:
    hidden: int = 0  # 0: linear probe; > 0: one hidden layer of this width (CLIP-XRad's small MLP)
    epochs: int = 200
    lr: float = 1e-2
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class BootstrapParams:
    """Paired bootstrap over test studies (`pipeline.metrics.bootstrap`): percentile CIs per metric.

    The seed fixes the resamples of a test split; every method must use the same one for the comparison
    step to pair them, which is why it is a separate setting from ``evaluate.seed``.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95  # two-sided confidence level of the intervals

    def __post_init__(self) -> None:
        if (
            isinstance(self.n_resamples, bool)
            or not isinstance(self.n_resamples, int)
            or self.n_resamples < 1
        ):
            raise ValueError(f"bootstrap.n_resamples must be an int >= 1, got {self.n_resamples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"bootstrap.seed must be an int >= 0, got {self.seed!r}")
        if isinstance(self.level, bool) or not isinstance(self.level, int | float) or not 0 < self.level < 1:
            raise ValueError(f"bootstrap.level must lie in (0, 1), got {self.level!r}")


@dataclass(frozen=True)
class EvaluateParams:
    split: str = "test"  # the gallery and queries
    threshold_split: str = "validate"  # Youden thresholds (zero-shot binary protocol, probe)
    probe_split: str = "train"  # linear-probe training features
    query_text: str = "findings"  # findings (falling back to impression) | longest (CXR-CLIP)
    ks: tuple[int, ...] = (1, 5, 10, 100)  # R@K; RSUM over all of them (the paper's 8-term RSUM)
    rsum_short_ks: tuple[int, ...] = (1, 5, 10)  # the 6-term RSUM
    precision_ks: tuple[int, ...] = (1, 5, 10)  # class-based P@K (CLIP-XRad)
    confidence: str = "auto"  # selective retrieval: auto = variance (probabilistic) / top1 (deterministic)
    calibration_bins: int = 15
    zero_shot: ZeroShotParams = field(default_factory=ZeroShotParams)
    robustness: RobustnessParams = field(default_factory=RobustnessParams)
    probe: ProbeParams = field(default_factory=ProbeParams)
    bootstrap: BootstrapParams = field(default_factory=BootstrapParams)
    tsne_perplexity: float = 30.0
    tsne_max_points: int = 2000  # t-SNE on the first N test studies (its cost grows with N²)
    chunk: int = 1024  # query rows scored at once: bounds memory for large galleries
    batch_size: int = 64
    workers: int = 0
    seed: int = 0
    log_to_mlflow: bool = True

    def __post_init__(self) -> None:
        if self.query_text not in QUERY_TEXTS:
            raise ValueError(f"query_text must be one of {tuple(QUERY_TEXTS)}, got {self.query_text!r}")
        if self.confidence not in CONFIDENCE_KINDS:
            raise ValueError(f"confidence must be one of {CONFIDENCE_KINDS}, got {self.confidence!r}")
        if min(self.ks + self.rsum_short_ks + self.precision_ks) < 1:
            raise ValueError("every K must be >= 1")
        if self.calibration_bins < 1 or self.chunk < 1 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("need calibration_bins, chunk, batch_size >= 1 and workers >= 0")
