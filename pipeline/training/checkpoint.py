"""Resume checkpoints (everything needed to continue bit-for-bit) and the best-model export.

`last.pt` is written at the end of every epoch and read with ``weights_only=True``: only tensors and plain
containers go in, so loading never runs pickled code. RNG states are stored as tensors for that reason.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, atomic_path, write_json

LAST_FILE = "last.pt"
FORMAT = 1


class CheckpointError(PipelineError):
    """A resume checkpoint that cannot be used."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.long), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Atomically write `state` (model, loss, optimiser, scheduler, scaler, epoch, step...) + RNG states."""
    payload = {"format": FORMAT, "rng": rng_state(), **state}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # never echo torch's advice to retry with weights_only=False
        raise CheckpointError(
            f"{path}: unreadable checkpoint, refused: it holds Python objects besides tensors (code could "
            "run on loading), so this pipeline did not write it; delete it to start over"
        ) from exc
    except Exception as exc:  # a truncated or foreign file: say which and how to recover
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({first}); delete it to start over") from exc
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format')} != {FORMAT}; delete it")
    return payload


def export_best(
    path: str | Path, model: nn.Module, loss: nn.Module, method: str, info: dict[str, Any]
) -> None:
    """The evaluation-facing checkpoint: ``model/`` (architecture + weights), ``loss.safetensors`` (a, b, τ)
    and ``method.json`` (method name, loss config, epoch and validation metrics)."""
    from safetensors.torch import save_file

    from pipeline.models import save_model

    with atomic_dir(path) as tmp:
        save_model(model, tmp / "model")
        state = {k: v.detach().contiguous().cpu() for k, v in loss.state_dict().items()}
        save_file(state, str(tmp / "loss.safetensors"))
        write_json(tmp / "method.json", {"method": method, **info})


def read_method_info(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "method.json").read_text(encoding="utf-8"))
