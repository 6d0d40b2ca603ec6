"""A trained method as evaluation sees it: model, loss (its similarity and a, b, τ), tokenizer, loaders."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.data import LoaderConfig, check_shard_resolution, create_eval_loader, tokenize
from pipeline.embedding import Embedded, embed_loader
from pipeline.errors import PipelineError
from pipeline.evaluation.params import QUERY_TEXTS, EvaluateParams
from pipeline.io import folder_digest
from pipeline.losses import create_loss, loss_config
from pipeline.models import load_model, load_tokenizer
from pipeline.training.checkpoint import read_method_info


@dataclass
class TrainedMethod:
    method: str
    model: nn.Module
    loss: nn.Module
    tokenizer: Any
    info: dict[str, Any]

    @property
    def probabilistic(self) -> bool:
        return bool(self.loss.probabilistic)

    def similarity(self, query: dict[str, torch.Tensor], gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.loss.similarity(query, gallery)

    def loader_config(self, params: EvaluateParams) -> LoaderConfig:
        cfg = self.model.config
        return LoaderConfig(
            image_size=cfg.image.img_size,
            max_tokens=cfg.text.max_length,
            batch_size=params.batch_size,
            workers=params.workers,
            shuffle_buffer=0,
            eval_text=QUERY_TEXTS[params.query_text],
            mean=float(self.info["image_mean"]),
            std=float(self.info["image_std"]),
        )

    def check_shards(self, split_dir: Path) -> None:
        check_shard_resolution(split_dir, self.model.config.image.img_size)

    def embed_split(
        self,
        shard_dir: Path,
        params: EvaluateParams,
        texts: bool = True,
        feat: bool = False,
        images: bool = False,
    ) -> Embedded:
        loader = create_eval_loader(shard_dir, self.tokenizer, self.loader_config(params))
        return embed_loader(self.model, loader, texts=texts, keep_feat=feat, keep_images=images)

    @torch.no_grad()
    def embed_corrupted(
        self, clean: Embedded, corrupt: Callable, params: EvaluateParams
    ) -> dict[str, torch.Tensor]:
        """Image embeddings of `corrupt` applied to the kept clean inputs (undoing and redoing the
        normalisation, exactly as the evaluation loader orders it: resize → corrupt → normalise)."""
        if clean.images is None:
            raise ValueError("embed the clean split with images=True first")
        cfg = self.loader_config(params)
        parts = []
        for start in range(0, len(clean), params.batch_size):
            rows = slice(start, start + params.batch_size)
            images = corrupt(clean.images[rows] * cfg.std + cfg.mean, clean.study_id[rows])
            parts.append(self.model.encode_image((images - cfg.mean) / cfg.std))
        return {k: torch.cat([p[k] for p in parts]).float() for k in parts[0] if k != "feat"}

    @torch.no_grad()
    def embed_texts(
        self, texts: Sequence[str], block: int | None = None, device: str | torch.device | None = None
    ) -> dict[str, torch.Tensor]:
        """Head outputs of `texts`, `block` texts at a time (each block tokenized on its own, bounding
        memory; default one block), on `device` (default: the tokens' CPU)."""
        self.model.eval()
        block = block or max(1, len(texts))
        parts = []
        for start in range(0, len(texts), block) if texts else [0]:
            tokens = tokenize(
                self.tokenizer, list(texts[start : start + block]), self.model.config.text.max_length
            )
            ids, mask = (tokens[key].long().to(device) for key in ("input_ids", "attention_mask"))
            out = self.model.encode_text(ids, mask)
            parts.append({k: v.float() for k, v in out.items() if k != "feat"})
        return parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def load_trained(best: str | Path, tokenizer: str | Path | None = None) -> TrainedMethod:
    """Rebuild the exported best checkpoint (`best/` of a train stage) from local files only."""
    from safetensors.torch import load_file

    best = Path(best)
    if not (best / "method.json").is_file():
        raise PipelineError(f"{best}: no trained model (method.json missing); run the train stage first")
    info = read_method_info(best)
    missing = [key for key in ("image_mean", "image_std") if not isinstance(info.get(key), int | float)]
    if missing or not info.get("image_std"):
        raise PipelineError(
            f"{best / 'method.json'}: no usable input normalisation ({', '.join(missing) or 'image_std 0'}); "
            "the model comes from an older trainer, so retrain it (dvc repro -f train)"
        )
    model = load_model(best / "model")
    text = model.config.text
    if tokenizer is not None and text.name_or_path is None:
        text = dataclasses.replace(text, tokenizer=str(tokenizer))
    method = info["method"]
    loss = create_loss(method, loss_config(method, info["loss_config"]), embed_dim=model.config.head.dim)
    if loss.probabilistic != (model.config.head.kind == "gaussian"):
        raise PipelineError(f"{best}: the {model.config.head.kind} head does not fit method '{method}'")
    loss.load_state_dict(load_file(str(best / "loss.safetensors")))
    expected = info.get("tokenizer_sha256")
    if expected and text.name_or_path is None and folder_digest(text.tokenizer) != expected:
        raise PipelineError(
            f"{text.tokenizer}: not the tokenizer {best} was trained with (its vocabulary changed since); "
            "retrain the model on it (dvc repro) or restore the matching tokenizer (dvc checkout)"
        )
    return TrainedMethod(method, model.eval(), loss.eval(), load_tokenizer(text), info)


def head(embedded: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An embedding dict without its backbone features (``feat``): what scorers and losses take."""
    return {k: v for k, v in embedded.items() if k != "feat"}
