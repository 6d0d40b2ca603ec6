"""The ``retrieval`` params section: the gallery a trained method searches and its calibrated abstention."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class RetrievalParams:
    """What `gallery@{method}-{seed}` builds (see `pipeline.retrieval`).

    ``k``/``target_risk``/``delta``: the default abstention rule — with probability >= 1 − delta the share
    of accepted queries whose own report (image) is missing from the top k stays <= target_risk.
    """

    k: int = 50  # synthetic data: R@10 over ~1,350 reports is ~5 %, so K = 10 could never be certified
    target_risk: float = 0.7
    delta: float = 0.1
    gallery_splits: tuple[str, ...] = ("train", "validate")  # studies whose reports/images are searched
    calibration_split: str = "validate"  # half places the candidate thresholds, half tests them
    grid_levels: int = 50
    min_coverage: float = 0.05  # the most confident candidate accepts at least this share
    reports: str | None = None  # a CSV of reports (study_id + text or findings/impression) to search
    batch_size: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an int >= 1, got {self.k!r}")
        for name in ("target_risk", "delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
        unknown = set(self.gallery_splits) | {self.calibration_split}
        if not self.gallery_splits or unknown - set(SPLITS):
            raise ValueError(f"splits must be drawn from {SPLITS}, got {sorted(unknown)}")
        if self.grid_levels < 1 or not 0 < self.min_coverage <= 1 or self.batch_size < 1:
            raise ValueError("need grid_levels >= 1, 0 < min_coverage <= 1 and batch_size >= 1")
