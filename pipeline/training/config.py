"""One training run's configuration, resolved once from params.yaml: what to train, on what, with what.

`resolve_config` is the only place that turns the ``train``, ``model`` and ``losses.<method>`` sections into
typed settings; the stage resolves once and hands the result down (flow → launch → trainer). A process of
its own (a torchrun rank) resolves again from the same file, which is the same function on the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, read_params, suggest
from pipeline.io import files_digest, folder_files
from pipeline.losses import LOSSES, loss_config
from pipeline.models import ModelConfig, model_params
from pipeline.training.params import TrainParams, train_params

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Settings that change how a run is watched, not what it computes: excluded from the resume fingerprint.
UNTRACKED = (
    "progress",
    "log_every",
    "retries",
    "retry_delay_s",
    "experiment",
    "tracking_uri",
    "log_checkpoint",
    "rdzv_endpoint",  # where the nodes meet, not what they compute
    "rdzv_id",
)


@dataclass(frozen=True)
class TrainRequest:
    """Where one run reads and writes; `seed` (from params.yaml ``seeds``) overrides ``train.seed``."""

    method: str
    params: str = "params.yaml"
    shards: str = "data/shards"
    tokenizer: str = "models/tokenizer"
    out: str = "models/clip"
    metrics: str | None = None  # None: <out>/metrics.json
    history: str | None = None  # None: <out>/history.csv
    seed: int | None = None  # None: train.seed

    @property
    def metrics_path(self) -> Path:
        return Path(self.metrics) if self.metrics else Path(self.out) / "metrics.json"

    @property
    def history_path(self) -> Path:
        return Path(self.history) if self.history else Path(self.out) / "history.csv"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainRequest:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ResolvedConfig:
    """Everything a run depends on, resolved from params.yaml (what MLflow records as parameters)."""

    method: str
    train: TrainParams  # the shared section with the method's own `train` overrides and the seed applied
    method_cfg: Any
    model: ModelConfig
    train_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        method_block = dataclasses.asdict(self.method_cfg)
        if self.train_overrides:
            method_block["train"] = dict(self.train_overrides)
        return {
            "method": self.method,
            "train": dataclasses.asdict(self.train),
            "losses": {self.method: method_block},
            "model": dataclasses.asdict(self.model),
        }


def check_methods(params: dict[str, Any], where: str) -> None:
    """Every name under ``losses`` and in ``methods`` must be a registered loss (the registry is the one
    map from a name to code; params.yaml says which of them a repro runs)."""
    for key in ("losses", "methods"):
        for name in params.get(key) or []:
            if name not in LOSSES:
                raise ConfigError(
                    f"{where}:{key}: unknown method '{name}'{suggest(str(name), LOSSES)}; "
                    f"the registered methods are {sorted(LOSSES)}"
                )


def resolve_config(
    method: str, params_path: str | Path, tokenizer: str | Path | None = None, seed: int | None = None
) -> ResolvedConfig:
    if method not in LOSSES:
        choices = sorted(LOSSES)
        raise ConfigError(f"unknown method '{method}'{suggest(method, LOSSES)}; choose one of {choices}")
    params = read_params(params_path)
    check_methods(params, str(params_path))
    block, where = method_block(params, method)
    block, overrides = split_train_overrides(block, f"{params_path}:{where}")
    shared = {**(params.get("train") or {}), **overrides}
    if seed is not None:
        shared["seed"] = seed
    train = train_params(shared, f"{params_path}:train")
    models = model_params(params.get("model"), f"{params_path}:model")
    profile = train.profile or models.profile
    if profile not in {f.name for f in dataclasses.fields(models)} - {"profile"}:
        raise ConfigError(f"{params_path}:train.profile: unknown profile '{profile}'")
    model = getattr(models, profile)
    if tokenizer is not None and model.text.name_or_path is None:  # our own vocabulary (tiny profile)
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, tokenizer=str(tokenizer)))
    method_cfg = loss_config(method, block, f"{params_path}:{where}")
    return ResolvedConfig(method, train, method_cfg, model, overrides)


def method_block(params: dict[str, Any], method: str) -> tuple[dict | None, str]:
    """The method's params block: ``losses.<method>`` (or a top-level ``<method>`` section)."""
    if isinstance(params.get("losses"), dict) and method in params["losses"]:
        return params["losses"][method], f"losses.{method}"
    return params.get(method), method


def split_train_overrides(block: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """(loss settings, the method's ``train`` overrides): methods learn best at different learning rates
    (the papers tune each), and keeping the override in the method's block keeps DVC's staleness exact."""
    if not isinstance(block, dict) or "train" not in block:
        return block, {}
    block = dict(block)
    overrides = block.pop("train") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.train: expected a mapping of train settings, got {overrides!r}")
    train_params(overrides, f"{where}.train")  # unknown keys and bad values are named where they are
    return block, overrides


def input_digest(shards: Path, tokenizer: Path) -> str:
    """Hash of the shard indexes (which carry every shard's sha256) and the tokenizer files."""
    return files_digest(sorted(shards.glob("*/index.json")) + folder_files(tokenizer))


def code_digest(package: Path = PACKAGE_DIR) -> str:
    """Hash of the library's source: a checkpoint left by other code (a changed loss, say) is not resumed."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def fingerprint(cfg: ResolvedConfig, inputs: str) -> str:
    """What a resume checkpoint must match: the resolved config, the input data and the library code."""
    resolved = cfg.as_dict()
    resolved["train"] = {k: v for k, v in resolved["train"].items() if k not in UNTRACKED}
    text = json.dumps(
        {"config": resolved, "inputs": inputs, "code": code_digest()}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()
