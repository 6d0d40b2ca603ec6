"""The corpus cases of training and evaluation inputs: shards, tokenizer, checkpoints, params."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from corpus import Case, Fails, Kept

# -- corruptions: training and evaluation inputs --------------------------------------------------------


@dataclass
class TrainWorkspace:
    """A tiny trained project (shards, tokenizer, params, `models/clip` trained for one epoch)."""

    path: Path
    method: str = "clip"
    evaluate: bool = False  # run the evaluation entry point instead of training

    @property
    def shards(self) -> Path:
        return self.path / "shards"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer"

    @property
    def model(self) -> Path:
        return self.path / "models" / self.method

    def edit_params(self, fn: Callable[[dict], None]) -> None:
        path = self.path / "params.yaml"
        params = yaml.safe_load(path.read_text())
        fn(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def for_evaluation(corrupt: Callable[[TrainWorkspace], None] | None = None, method: str = "clip"):
    def run(ws: TrainWorkspace) -> list[int]:
        ws.evaluate, ws.method = True, method
        if corrupt:
            corrupt(ws)
        return []

    return run


def for_training(corrupt: Callable[[TrainWorkspace], None], method: str = "clip"):
    """Train `method` again after `corrupt`; its earlier outputs go, its resume state/ stays."""

    def run(ws: TrainWorkspace) -> list[int]:
        ws.method = method
        corrupt(ws)
        shutil.rmtree(ws.model / "best", ignore_errors=True)
        for name in ("metrics.json", "history.csv"):
            (ws.model / name).unlink(missing_ok=True)
        return []

    return run


def delete_shard(ws: TrainWorkspace) -> None:
    (ws.shards / "train" / "shard-000000.tar").unlink()


def truncate_shard(ws: TrainWorkspace) -> None:
    path = ws.shards / "validate" / "shard-000000.tar"
    path.write_bytes(path.read_bytes()[:3000])


def remove_tokenizer(ws: TrainWorkspace) -> None:
    shutil.rmtree(ws.tokenizer)


def empty_tokenizer(ws: TrainWorkspace) -> None:
    for path in ws.tokenizer.iterdir():
        path.unlink()


def retrained_tokenizer(ws: TrainWorkspace) -> None:
    from pipeline.tokenizer import TokenizerParams, save_tokenizer, train_wordpiece

    texts = ["left lower lobe opacity", "small right pleural effusion", "no pneumothorax"] * 5
    save_tokenizer(train_wordpiece(texts, TokenizerParams(vocab_size=120, min_frequency=1)), ws.tokenizer)


def other_methods_checkpoint(ws: TrainWorkspace) -> None:
    shutil.copytree(ws.path / "models" / "clip", ws.model)


def foreign_resume_state(ws: TrainWorkspace) -> None:
    """The output folder holds the resume state of a run with another model profile (head width)."""
    ws.edit_params(lambda p: p["model"]["tiny"]["head"].update(dim=8))


def truncate_resume_state(ws: TrainWorkspace) -> None:
    path = ws.model / "state" / "last.pt"
    path.write_bytes(path.read_bytes()[:2000])


def truncate_best_weights(ws: TrainWorkspace) -> None:
    path = ws.model / "best" / "model" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])


def no_trained_model(ws: TrainWorkspace) -> None:
    shutil.rmtree(ws.model / "best")


def edit(fn: Callable[[dict], None]) -> Callable[[TrainWorkspace], None]:
    return lambda ws: ws.edit_params(fn)


REBUILD_SHARDS = r"dvc repro -f shards"

TRAINING_CASES = [
    Case("shards: a shard deleted after writing", for_training(delete_shard),
         Fails("train", (r"train/shard-000000.tar: missing", REBUILD_SHARDS))),
    Case("shards: a shard truncated after writing", for_evaluation(truncate_shard),
         Fails("evaluate", (r"validate/shard-000000.tar: 3000 bytes, the index says \d+", REBUILD_SHARDS))),
    Case("tokenizer: folder missing", for_training(remove_tokenizer),
         Fails("train", ("tokenizer .* not found", "run the `tokenizer` stage"))),
    Case("tokenizer: folder emptied", for_training(empty_tokenizer),
         Fails("train", ("no tokenizer.json or vocab.txt in it", "run the `tokenizer` stage"))),
    Case("tokenizer: retrained after the model", for_evaluation(retrained_tokenizer),
         Fails("evaluate", ("not the tokenizer .* was trained with", "dvc repro"))),
    Case("checkpoint: another method's model", for_evaluation(other_methods_checkpoint, method="cxrclip"),
         Fails("evaluate", ("holds a 'clip' model, not 'cxrclip'", "retrain it"))),
    Case("checkpoint: resume state of another profile", for_training(foreign_resume_state),
         Kept(message="from another configuration, input data or code; starting from scratch")),
    Case("checkpoint: resume state truncated", for_training(truncate_resume_state),
         Fails("train", ("last.pt: unreadable checkpoint", "delete it to start over"))),
    Case("checkpoint: best weights truncated", for_evaluation(truncate_best_weights),
         Fails("evaluate", ("model.safetensors: unreadable", "dvc checkout"))),
    Case("checkpoint: not trained yet", for_evaluation(no_trained_model),
         Fails("evaluate", ("no trained model", "run the train stage first"))),
    Case("params: unknown method block", for_training(edit(lambda p: p["losses"].update(clipp={}))),
         Fails("train", (r"losses: unknown method 'clipp' \(did you mean 'clip'\?\)",))),
    Case("params: typo'd train key", for_training(edit(lambda p: p["train"].update(epoch=3))),
         Fails("train", (r"params.yaml:train: unknown key 'epoch' \(did you mean 'epochs'\?\)",))),
    Case("params: typo'd evaluate key", for_evaluation(edit(lambda p: p["evaluate"].update(kss=[1]))),
         Fails("evaluate", (r"params.yaml:evaluate: unknown key 'kss' \(did you mean 'ks'\?\)",))),
    Case("params: unknown method name", for_training(lambda ws: None, method="clip2"),
         Fails("train", (r"invalid choice: 'clip2'",))),
    # -- round 2 (issue 17): checked before any server starts, named by key ------------------------------
    Case("params: batch_size 0", for_training(edit(lambda p: p["train"].update(batch_size=0))),
         Fails("train", (r"params.yaml:train: batch_size must be >= 1, got 0",))),
    Case("params: negative epochs", for_training(edit(lambda p: p["train"].update(epochs=-2))),
         Fails("train", (r"params.yaml:train: epochs must be >= 1, got -2",))),
    Case("params: float epochs", for_training(edit(lambda p: p["train"].update(epochs=1.5))),
         Fails("train", (r"params.yaml:train.epochs: expected an integer, got 1.5 \(float\)",))),
    Case("params: negative train seed", for_training(edit(lambda p: p["train"].update(seed=-7))),
         Fails("train", (r"params.yaml:train.seed: a seed must lie in 0",))),
    Case("params: quoted 'false' for a train flag", for_training(edit(lambda p: p["train"].update(deterministic="false"))),
         Fails("train", (r"params.yaml:train.deterministic: expected true or false, got 'false'",))),
    Case("params: batch not divisible by the ranks", for_training(edit(lambda p: p["train"].update(nproc_per_node=3))),
         Fails("train", (r"train.batch_size \d+ is not divisible by the 3 DDP ranks",))),
    Case("params: a method's loss setting of the wrong type",
         for_training(edit(lambda p: p["losses"]["clip"].update(learn_temperature="yes"))),
         Fails("train", (r"losses.clip.learn_temperature: expected true or false, got 'yes'",))),
    Case("evaluate: unknown method", for_evaluation(method="clipp"),
         Fails("evaluate", (r"unknown method 'clipp' \(did you mean 'clip'\?\)",))),
    Case("params: evaluate.ks holds a float", for_evaluation(edit(lambda p: p["evaluate"].update(ks=[1, 2.5]))),
         Fails("evaluate", (r"params.yaml:evaluate.ks\[1\]: expected an integer, got 2.5 \(float\)",))),
]  # fmt: skip
