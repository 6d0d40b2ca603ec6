"""A trained method as a registered MLflow model: an ``mlflow.pyfunc`` wrapper around the same `Retriever`
that `medprobclip retrieve` and `medprobclip serve` use, logged into the method's training run (so the
run's "Models" column shows it), registered as a version of ``medprobclip-<method>``, with the alias
``champion`` on the best method by validation RSUM and ``best`` on each method's best seed.

Input: a DataFrame with one row per query — ``image`` (a base64 JPEG/PNG, optionally a ``data:`` URL) or
``text`` (a report sentence, for text → image retrieval), optional ``name`` — and the param ``k``.
Output: one object per row, the issue's JSON shape ``{"query", "abstain", "uncertainty", "hits": [...]}``.
REST (``mlflow models serve -m models:/medprobclip-<method>@champion --env-manager local``)::

    POST /invocations {"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}, "params": {"k": 5}}

The artifact is the model folder's inference files (weights, tokenizer, gallery, threshold): **the
gallery's report text is part of the model**. On real MIMIC-CXR a registered model is protected health
information, and so is the registry's artifact store. Params and tags hold names, digests and numbers only.
The model needs this project's ``pipeline`` package importable where it is served (``--env-manager
local`` in the project's environment); its pip requirements list the third-party packages it uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.retrieval.bundle import BUNDLE_DIR
from pipeline.retrieval.upload import MAX_K, Limits, UploadError, parse_k, read_upload, synthetic_xray

ARTIFACT = "retriever"  # key of the model folder among the logged model's artifacts
MODEL_NAME = "retriever"  # the logged model's name inside the training run
CHAMPION, BEST = "champion", "best"
REQUIREMENTS = (
    "torch", "torchvision", "timm", "transformers", "tokenizers", "safetensors", "pillow", "numpy",
    "pandas", "pyyaml", "scipy", "mlflow",
)  # fmt: skip
MODEL_CODE = (
    "# The MedProbCLIP retriever as an MLflow model from code (pipeline/retrieval/pyfunc.py)\n"
    "from mlflow.models import set_model\n\n"
    "from pipeline.retrieval.pyfunc import RetrieverModel\n\n"
    "set_model(RetrieverModel())\n"
)
BUNDLE_PARTS = ("best", BUNDLE_DIR)  # what `Retriever.from_folder` reads


def registered_name(method: str) -> str:
    return f"medprobclip-{method}"


def model_signature(k_default: int = 5) -> ModelSignature:
    inputs = Schema([
        ColSpec("string", "image", required=False),
        ColSpec("string", "text", required=False),
        ColSpec("string", "name", required=False),
    ])  # fmt: skip
    hit = Object([
        Property("study_id", "long"), Property("score", "double"),
        Property("uncertainty", "double", required=False), Property("text", "string"),
    ])  # fmt: skip
    outputs = Schema([
        ColSpec("string", "query"), ColSpec("boolean", "abstain"), ColSpec("double", "uncertainty"),
        ColSpec(Array(hit), "hits"),
    ])  # fmt: skip
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("k", "long", int(k_default))]))


def encode_image(image: Image.Image) -> str:
    """Base64 PNG, the input the model's ``image`` column takes."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def input_example() -> pd.DataFrame:
    return pd.DataFrame({"image": [encode_image(synthetic_xray())], "name": ["synthetic-example"]})


def _bad_input(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)  # HTTP 400 from `models serve`


def _cell(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value) or None


def decode_image(retriever: Any, value: str, name: str) -> Image.Image:
    """A base64 (or ``data:image/...;base64,``) JPEG/PNG, checked and decoded like an upload to the page."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UploadError(400, f"{name}: `image` is not valid base64 ({exc})") from None
    return read_upload(retriever, data, name)


class RetrieverModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a `Retriever`; it holds nothing until `load_context` reads the artifact."""

    def load_context(self, context: Any) -> None:
        import torch

        from pipeline.retrieval.retriever import Retriever

        config = getattr(context, "model_config", None) or {}  # `load_model(..., model_config=)`
        device = config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.retriever = Retriever.from_folder(context.artifacts[ARTIFACT], device=device)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        try:
            return predict(self.retriever, model_input, params)
        except PipelineError as exc:
            raise _bad_input(str(exc)) from None


def predict(retriever: Any, frame: pd.DataFrame, params: Mapping[str, Any] | None = None) -> list[dict]:
    """Rows in order; image rows in one batch, text rows in another. `k` is checked and capped like the
    page's (at most `MAX_K`, or the calibrated k if larger): a caller cannot page through the gallery."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    default = int(getattr(retriever, "k_default", 5))  # the k the threshold is calibrated at
    k = parse_k((params or {}).get("k"), default, Limits(max_k=max(MAX_K, default)))
    images: list[tuple[int, Image.Image, str]] = []
    texts: list[tuple[int, str]] = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        image, text, name = _cell(row, "image"), _cell(row, "text"), _cell(row, "name")
        if (image is None) == (text is None):
            raise UploadError(400, f"row {i}: give exactly one of `image` (base64 JPEG/PNG) or `text`")
        if image is not None:
            name = name or f"image-{i}"
            images.append((i, decode_image(retriever, image, name), name))
        else:
            texts.append((i, text))  # type: ignore[arg-type]
    results: dict[int, dict] = {}
    if images:
        found = retriever.search_images([im for _, im, _ in images], k=k, names=[n for _, _, n in images])
        results |= {i: r.to_dict() for (i, _, _), r in zip(images, found, strict=True)}
    if texts:
        found = retriever.search_text([t for _, t in texts], k=k)
        results |= {i: r.to_dict() for (i, _), r in zip(texts, found, strict=True)}
    return [results[i] for i in range(len(frame))]


def load_retriever_from_mlflow(uri: str, device: str | None = None) -> Any:
    """The `Retriever` inside a logged/registered model (``models:/name@alias``, ``runs:/id/retriever``),
    on `device` (default: cuda when present)."""
    from pipeline import tracking

    mlflow.set_tracking_uri(tracking.resolve_uri())
    try:
        model = mlflow.pyfunc.load_model(uri, model_config={"device": device} if device else None)
    except MlflowException as exc:
        raise PipelineError(f"{uri}: cannot load the MLflow model ({exc.message.splitlines()[0]})") from exc
    python_model = model.unwrap_python_model()
    if not isinstance(python_model, RetrieverModel):
        raise PipelineError(f"{uri}: not a MedProbCLIP retriever model ({type(python_model).__name__})")
    return python_model.retriever


def bundle_files(folder: Path) -> list[Path]:
    """The inference files of a model folder (``best/`` and ``retrieval/``, recursively), sorted; not the
    resume state (optimizer, RNG) nor the training record."""
    found = sorted(p for part in BUNDLE_PARTS for p in (folder / part).rglob("*") if p.is_file())
    if not any(p.name == "retrieval.json" for p in found):
        raise PipelineError(f"{folder}: no retrieval bundle to register; run its gallery stage first")
    return found


def bundle_digest(folder: Path) -> str:
    """sha256 over the relative paths and bytes of `bundle_files`: unchanged files, unchanged digest."""
    digest = hashlib.sha256()
    for path in bundle_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def requirements() -> list[str]:
    found = []
    for name in REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class Candidate:
    """One trained model folder to register: its method, seed, training run and validation RSUM."""

    method: str
    seed: int
    folder: Path
    run: Mapping[str, str]
    val_rsum: float


def choose_champion(candidates: Sequence[Candidate]) -> tuple[str, dict[str, int]]:
    """The method with the highest mean validation RSUM over its seeds (ties: first in params order),
    and each method's best seed (ties: first seed). Validation, not test: the test split stays untouched."""
    by_method: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_method.setdefault(c.method, []).append(c)
    if not by_method:
        raise PipelineError("no trained models to register")
    means = {m: float(np.mean([c.val_rsum for c in cs])) for m, cs in by_method.items()}
    champion = max(means, key=lambda m: (means[m], -list(means).index(m)))
    best = {m: max(cs, key=lambda c: (c.val_rsum, -cs.index(c))).seed for m, cs in by_method.items()}
    return champion, best


def register_models(candidates: Sequence[Candidate]) -> dict:
    """Log and register every candidate (a folder whose inference files are unchanged since its last
    registration reuses that version), then point ``best`` and ``champion``. Returns what was done, for
    ``metrics/register.json``."""
    from pipeline import tracking

    champion, best = choose_champion(candidates)
    records = []
    for c in candidates:
        uri = tracking.resolve_uri(c.run.get("tracking_uri"))
        tracking.check_reachable(uri)
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        name = registered_name(c.method)
        digest = bundle_digest(c.folder)[: tracking.DIGEST_LENGTH]
        version = _existing_version(client, name, c.seed, digest) or _log_and_register(
            c, name, digest, client
        )
        records.append({
            "method": c.method, "seed": c.seed, "name": name, "version": int(version),
            "run_id": c.run["run_id"], "val_rsum": c.val_rsum, "digest": digest,
            "uri": f"models:/{name}/{version}",
        })  # fmt: skip
        if best[c.method] == c.seed:
            client.set_registered_model_alias(name, BEST, str(version))
    winner = next(r for r in records if r["method"] == champion and r["seed"] == best[champion])
    client = mlflow.MlflowClient(tracking.resolve_uri(candidates[0].run.get("tracking_uri")))
    for model in client.search_registered_models(f"name LIKE '{registered_name('')}%'"):
        if model.name != winner["name"] and _alias_version(client, model.name, CHAMPION) is not None:
            client.delete_registered_model_alias(model.name, CHAMPION)  # one champion across methods
    client.set_registered_model_alias(winner["name"], CHAMPION, str(winner["version"]))
    return {
        "champion": winner | {"uri": f"models:/{winner['name']}@{CHAMPION}"},
        "models": records,
        "selection": "highest mean validation RSUM over seeds; within it, the seed with the highest",
    }


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def _existing_version(client: Any, name: str, seed: int, digest: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    same = [v for v in versions if v.tags.get("digest") == digest and v.tags.get("seed") == str(seed)]
    return max((v.version for v in same), key=int, default=None)


def _model_code(folder: Path) -> Path:
    """The model as code ("models from code"): loading it imports `RetrieverModel` instead of unpickling
    an object from the artifact store (a pickle in a registry is code nobody can read)."""
    path = folder / "medprobclip_retriever.py"
    path.write_text(MODEL_CODE, encoding="utf-8")
    return path


def _log_and_register(c: Candidate, name: str, digest: str, client: Any) -> str:
    from pipeline import tracking

    with tempfile.TemporaryDirectory(prefix="medprobclip-model-") as tmp:
        staged = Path(tmp) / ARTIFACT
        for path in bundle_files(c.folder):
            target = staged / path.relative_to(c.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        from pipeline.retrieval.retriever import Retriever

        retriever = Retriever.from_folder(staged)  # fails here, not in the registry, if the bundle is broken
        about = retriever.describe()
        with mlflow.start_run(run_id=c.run["run_id"], log_system_metrics=False):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(_model_code(Path(tmp))),
                artifacts={ARTIFACT: str(staged)},
                signature=model_signature(getattr(retriever, "k_default", 5)),
                input_example=(input_example(), {"k": 3}),
                pip_requirements=requirements(),
                tags={"method": c.method, "seed": str(c.seed), "digest": digest},
            )
    tags = {
        "method": c.method, "seed": str(c.seed), "digest": digest, "val_rsum": f"{c.val_rsum:.4f}",
        "threshold": str(about.get("threshold")), "target_risk": str(about.get("target_risk")),
        **tracking.dvc_experiment(), **tracking.git_state(),
    }  # fmt: skip
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_registered_model(
        name,
        description=(
            f"MedProbCLIP pipeline, method {c.method}: image→report retrieval with calibrated abstention. "
            "The model artifact contains the gallery's report text: on real MIMIC-CXR treat it (and this "
            "registry's artifact store) as protected health information."
        ),
    )
    return version.version
