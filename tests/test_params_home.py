"""One home for every setting: params.yaml holds every value a run depends on, and no dataclass default
disagrees with it (a library caller or test that omits a key gets what `dvc repro` uses)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.data import LoaderConfig
from pipeline.evaluation.params import EvaluateParams
from pipeline.losses import LOSSES
from pipeline.mimic.labels import LabelsParams
from pipeline.mimic.reports import SectionsParams
from pipeline.models.profiles import ModelParams
from pipeline.results import CompareParams
from pipeline.retrieval.params import RetrievalParams
from pipeline.shards import ShardsConfig
from pipeline.studies import StudiesParams
from pipeline.synthetic.generate import SynthesizeParams
from pipeline.tokenizer import TokenizerParams
from pipeline.training.params import DERIVED_LOADER_KEYS, TrainParams

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))

# section path in params.yaml → the dataclass the stage builds from it
SECTIONS: dict[str, type] = {
    "synthesize": SynthesizeParams,
    "sections": SectionsParams,
    "labels": LabelsParams,
    "studies": StudiesParams,
    "shards": ShardsConfig,
    "tokenizer": TokenizerParams,
    "train": TrainParams,
    "train.loader": LoaderConfig,
    "evaluate": EvaluateParams,
    "compare": CompareParams,
    "retrieval": RetrievalParams,
} | {f"losses.{name}": cls.Config for name, cls in LOSSES.items()}

# Fields a run depends on that are deliberately not in params.yaml, and where their value comes from.
NOT_IN_PARAMS = {
    "train.profile": "None = model.profile",
    "train.seed": "the top-level `seeds` list (stages/train.py --seed)",
    "train.tracking_uri": "None = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db (where, not what)",
    "train.loader": "a mapping of LoaderConfig overrides, checked as its own section",
    "labels.agreement": "whether to also write the labeler's agreement metrics (no effect on the labels)",
    "evaluate.log_to_mlflow": "tests switch it off; runs always log",
    "evaluate.chunk": "memory bound of scoring; does not change a number",
} | {f"train.loader.{key}": f"derived from {owner}" for key, owner in DERIVED_LOADER_KEYS.items()}
NOT_IN_PARAMS |= {"train.loader.eval_text": "set by evaluation from evaluate.query_text"}


def section(path: str) -> Any:
    node: Any = PARAMS
    for key in path.split("."):
        node = node[key]
    return node


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def as_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: as_plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple | list):
        return [as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    return value


def disagreements(schema: type, values: dict[str, Any], where: str, defaults: Any = None) -> list[str]:
    """Keys missing from params.yaml and defaults that differ from it. A nested dataclass is compared with
    its parent's default for that field (a view's and a strong augmentation share a type, not values)."""
    found = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        name = f"{where}.{field.name}"
        default = default_of(field) if defaults is None else defaults.get(field.name, dataclasses.MISSING)
        if field.name not in values:
            if name not in NOT_IN_PARAMS and not name.startswith("losses."):
                found.append(f"{name}: missing from params.yaml (default {as_plain(default)!r})")
            continue
        value, tp = values[field.name], hints[field.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            found += disagreements(tp, value, name, as_plain(default))
        elif name in NOT_IN_PARAMS:
            continue
        elif default is not dataclasses.MISSING and as_plain(default) != as_plain(value):
            found.append(f"{name}: dataclass default {as_plain(default)!r} != params.yaml {value!r}")
    return found


@pytest.mark.parametrize("path", sorted(SECTIONS))
def test_no_dataclass_default_disagrees_with_params_yaml(path):
    values = section(path)
    assert disagreements(SECTIONS[path], values or {}, path) == []


def test_model_profiles_agree_with_params_yaml():
    """The tiny profile is wholly in params.yaml; the paper profile there holds only overrides."""
    tiny = section("model.tiny")
    defaults = as_plain(ModelParams().tiny)
    for part, values in tiny.items():
        for key, value in values.items():
            assert defaults[part][key] == as_plain(value), f"model.tiny.{part}.{key}"


def test_every_listed_method_has_a_block_and_a_registered_loss():
    assert PARAMS["methods"], "params.yaml methods: is empty"
    assert set(PARAMS["methods"]) <= set(LOSSES)
    assert set(PARAMS["methods"]) <= set(PARAMS["losses"])
    assert all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in PARAMS["seeds"])
