"""Trainer unit tests on a fake in-memory loader: schedule, groups, R@K, checkpoints, determinism, resume."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.losses import create_loss
from pipeline.models import ModelConfig, create_model
from pipeline.models.encoders import ImageEncoderConfig, TextEncoderConfig
from pipeline.models.heads import HeadConfig
from pipeline.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, set_rng_state
from pipeline.training.loop import BEST_FILE, Trainer
from pipeline.training.optim import cosine_factor, create_optimizer, create_scheduler
from pipeline.training.params import TrainParams, create_loader_config, train_params

SIZE, TOKENS, VOCAB, CLASSES = 16, 8, 40, 6
TINY = ModelConfig(
    # mean pooling: a random tiny transformer's CLS output barely depends on its input, so CLS-pooled
    # towers start (nearly) collapsed and contrastive training stalls at ln(B)
    image=ImageEncoderConfig(img_size=SIZE, patch_size=8, depth=1, embed_dim=32, num_heads=2, pool="avg"),
    text=TextEncoderConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_length=TOKENS,
        pool="mean",
    ),
    head=HeadConfig(dim=16),
)


def make_study(i: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A study's random bit code drawn as image stripes and spelled as text tokens: learnable retrieval."""
    bits = torch.randint(0, 2, (TOKENS - 2,), generator=gen)
    image = torch.zeros(1, SIZE, SIZE)
    for j, bit in enumerate(bits.tolist()):
        image[:, (j * SIZE) // len(bits) : ((j + 1) * SIZE) // len(bits)] = float(bit)
    image = image + 0.3 * torch.randn(image.shape, generator=gen)
    ids = torch.tensor([2] + [5 + 2 * j + b for j, b in enumerate(bits.tolist())] + [3])
    return image, ids, i % CLASSES


class FakeData:
    """Training batches in the loader's contract ([B, 2, 1, H, W] views, [B, 2, L] sections)."""

    def __init__(self, n: int = 24, batch: int = 8, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.studies = [make_study(i, gen) for i in range(n)]
        self.batch, self.n = batch, n

    def labels(self, c: int) -> torch.Tensor:
        return torch.tensor([1.0 if k == c else 0.0 for k in range(14)])

    def train(self, epoch: int) -> list[dict]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(100 + epoch)).tolist()
        batches = []
        for start in range(0, self.n, self.batch):
            idx = order[start : start + self.batch]
            images = torch.stack([torch.stack([self.studies[i][0]] * 2) for i in idx])
            ids = torch.stack([torch.stack([self.studies[i][1]] * 2) for i in idx])
            batches.append(
                {
                    "images": images
                    + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(epoch)),
                    "input_ids": ids,
                    "attention_mask": torch.ones_like(ids),
                    "labels": torch.stack([self.labels(self.studies[i][2]) for i in idx]),
                    "study_id": torch.tensor(idx),
                }
            )
        return batches

    def eval(self) -> list[dict]:
        batches = []
        for start in range(0, self.n, self.batch):
            part = self.studies[start : start + self.batch]
            ids = torch.stack([s[1] for s in part])
            batches.append(
                {
                    "image": torch.stack([s[0] for s in part]),
                    "input_ids": ids,
                    "attention_mask": torch.ones_like(ids),
                    "labels": torch.stack([self.labels(s[2]) for s in part]),
                    "study_id": torch.arange(start, start + len(part)),
                }
            )
        return batches


def make_trainer(
    tmp_path,
    method: str = "clip",
    data: FakeData | None = None,
    fingerprint: str = "fp",
    crash_at: tuple[int, int] | None = None,
    **params,
) -> Trainer:
    data = data or FakeData()
    cfg = TrainParams(**{"epochs": 3, "lr": 3e-3, "warmup_steps": 2, "progress": False, **params})
    loss = create_loss(method, {}, embed_dim=TINY.head.dim)
    model = create_model(TINY, head=loss.heads[0], seed=cfg.seed)

    def train_loader(epoch: int):
        for index, batch in enumerate(data.train(epoch)):
            if crash_at == (epoch, index):
                raise RuntimeError("simulated crash")
            yield batch

    class Sized:
        def __init__(self, epoch: int):
            self.epoch = epoch

        def __len__(self) -> int:
            return len(data.train(self.epoch))

        def __iter__(self):
            return train_loader(self.epoch)

    return Trainer(model, loss, cfg, Sized, data.eval, tmp_path / "state", fingerprint)


def test_cosine_schedule_warms_up_then_decays_to_floor():
    assert cosine_factor(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert cosine_factor(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert cosine_factor(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert cosine_factor(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = create_scheduler(opt, warmup=2, total=6)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([1.0, 2.0]) and lrs[2] == pytest.approx(2.0)
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))


def test_optimizer_groups_cover_every_parameter_once_and_spare_loss_scalars():
    loss = create_loss("medprobclip", {}, embed_dim=TINY.head.dim)
    model = create_model(TINY, head="gaussian", seed=0)
    opt = create_optimizer(model, loss, lr=1e-3, weight_decay=0.1)
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    expected = [p for m in (model, loss) for p in m.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(id(p) for p in expected) and len(seen) == len(set(seen))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(loss.a) not in decay and id(loss.b) not in decay
    assert any(g["weight_decay"] == 0.1 for g in opt.param_groups)


def test_validation_scores_with_the_method_similarity_and_ties_count_against_the_query():
    from pipeline.losses import create_loss
    from pipeline.training.retrieval import validate

    class Towers(torch.nn.Module):
        def encode_image(self, images):
            return {"emb": images.flatten(1), "feat": images.flatten(1)}

        def encode_text(self, input_ids, attention_mask):
            return {"emb": input_ids.float(), "feat": input_ids.float()}

    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]).view(3, 1, 1, 2)
    texts = torch.tensor([[1, 0], [1, 1], [0, 1]])  # image 2 ties texts 0/2's row: counts as a miss at R@1
    batch = {"image": images, "input_ids": texts, "attention_mask": torch.ones_like(texts)}
    batch |= {"labels": torch.zeros(3, 14), "study_id": torch.arange(3)}
    m = validate(Towers(), create_loss("clip"), [batch], torch.device("cpu"), contextlib.nullcontext)
    # cosine: image0 → [1, .71, 0], image1 → [0, .71, 1], image2 → [1, .71, 0]
    assert m["i2t_r1"] == pytest.approx(100 / 3) and m["i2t_r5"] == 100.0
    assert m["t2i_r1"] == 0.0 and m["t2i_r5"] == 100.0  # every text ties its image with another
    assert m["random_r1"] == pytest.approx(100 / 3) and m["n_queries"] == 3
    assert m["rsum"] == pytest.approx(sum(m[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))


def test_checkpoint_round_trip_is_weights_only_and_restores_rng(tmp_path):
    path = tmp_path / "ck.pt"
    torch.manual_seed(3)
    save_checkpoint(path, epoch=2, history=[{"epoch": 1.0}], model={"w": torch.ones(2)})
    expected = torch.rand(3)
    ck = load_checkpoint(path)
    set_rng_state(ck["rng"])
    assert torch.equal(torch.rand(3), expected) and ck["epoch"] == 2 and ck["history"] == [{"epoch": 1.0}]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="delete it"):
        load_checkpoint(path)


def test_train_params_reject_typos_and_trainer_owned_loader_keys():
    assert train_params({"epochs": 2, "loader": {"word_dropout": 0.2}}).epochs == 2
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        train_params({"epoch": 2})
    with pytest.raises(ConfigError, match="train.batch_size"):
        train_params({"loader": {"batch_size": 4}})
    with pytest.raises(ConfigError, match="unknown key 'wrd_dropout'"):
        train_params({"loader": {"wrd_dropout": 0.2}})
    with pytest.raises(ConfigError, match="precision"):
        train_params({"precision": "fp8"})
    with pytest.raises(ConfigError, match="divisible"):
        TrainParams(batch_size=6).local_batch(4)
    loader = create_loader_config(TrainParams(seed=7, workers=1), 64, 32, 16)
    assert (loader.image_size, loader.max_tokens, loader.batch_size, loader.seed) == (64, 32, 16, 7)


def test_same_seed_gives_identical_history_and_training_learns(tmp_path):
    a = make_trainer(tmp_path / "a", "medprobclip").fit()
    b = make_trainer(tmp_path / "b", "medprobclip").fit()
    assert a.history == b.history and a.step == 3 * 3
    first, last = a.history[0], a.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert max(r["val_i2t_r1"] for r in a.history) > 2 * first["val_random_r1"]
    assert set(first) >= {
        "epoch",
        "lr",
        "train_loss",
        "val_rsum",
        "val_i2t_r10",
        "val_t2i_r5",
        "train_sigma2_image",
    }


def test_kill_in_epoch_two_then_rerun_matches_uninterrupted(tmp_path):
    reference = make_trainer(tmp_path / "ref", "medprobclip")
    expected = reference.fit()
    crashed = make_trainer(tmp_path / "run", "medprobclip", crash_at=(1, 1))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit()
    assert crashed.progress.epoch == 1
    resumed = make_trainer(tmp_path / "run", "medprobclip")
    assert resumed.resume() and resumed.progress.epoch == 1
    resumed = make_trainer(tmp_path / "run", "medprobclip")
    got = resumed.fit()
    assert got.history == expected.history and got.step == expected.step
    for (name, p), q in zip(
        reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert (tmp_path / "run" / "state" / BEST_FILE).is_file()


def test_checkpoint_of_another_configuration_is_not_resumed(tmp_path):
    make_trainer(tmp_path, "clip", epochs=1).fit()
    other = make_trainer(tmp_path, "clip", epochs=1, fingerprint="other")
    assert not other.resume() and other.progress.epoch == 0
    same = make_trainer(tmp_path, "clip", epochs=1)
    assert same.resume() and same.progress.epoch == 1


def test_accumulation_and_clipping_count_optimizer_steps(tmp_path):
    data = FakeData(n=40, batch=8)  # 5 micro-batches per epoch
    trainer = make_trainer(tmp_path, "cxrclip", data=data, epochs=2, accumulation=2, grad_clip=1e-3)
    assert trainer.steps_per_epoch == 3
    progress = trainer.fit()
    assert progress.step == 6
    assert trainer.scheduler.last_epoch == 6


def test_precision_resolution():
    from pipeline.training.loop import resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) is None and resolve_precision("auto", cuda) is torch.bfloat16
    assert resolve_precision("fp16", cpu) is torch.float16 and resolve_precision("fp32", cuda) is None


def test_tiny_config_is_consistent():
    assert dataclasses.replace(TINY).text.max_length == TOKENS and math.isfinite(TINY.head.dim)


def build_tiny_project(root, method: str = "medprobclip", epochs: int = 2):
    """Shards (train + validate) from generated JPEGs, a WordPiece tokenizer and a params.yaml, in `root`."""
    import yaml
    from test_shards import make_study_fixture

    from pipeline.shards import ShardsConfig, create_shards
    from pipeline.tokenizer import TokenizerParams, save_tokenizer, train_wordpiece
    from pipeline.training.config import TrainRequest

    mimic, studies, truth = make_study_fixture(root, {"train": 16, "validate": 8})
    create_shards(
        studies,
        mimic,
        root / "shards",
        ShardsConfig(image_size=36, samples_per_shard=6, workers=1, splits=("train", "validate")),
    )
    texts = [t for row in truth.values() for t in (row["findings"], row["impression"])]
    save_tokenizer(
        train_wordpiece(texts, TokenizerParams(vocab_size=200, min_frequency=1)), root / "tokenizer"
    )
    params = {
        "train": {
            "epochs": epochs,
            "batch_size": 8,
            "eval_batch_size": 4,
            "lr": 1e-3,
            "warmup_steps": 1,
            "log_every": 1,
            "progress": False,
            "retry_delay_s": 0.0,
            "experiment": "tests",
        },
        "model": {
            "tiny": {
                "image": {"img_size": 32, "pool": "avg"},
                "text": {
                    "vocab_size": 256,
                    "hidden_size": 32,
                    "num_layers": 1,
                    "intermediate_size": 64,
                    "max_length": 32,
                    "pool": "mean",
                },
                "head": {"dim": 16},
            }
        },
        "losses": {method: {}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root, TrainRequest(
        method, str(root / "params.yaml"), str(root / "shards"), str(root / "tokenizer"), f"models/{method}"
    )


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    return build_tiny_project(tmp_path_factory.mktemp("project"))


def test_run_training_writes_outputs_and_a_loadable_best_model(tiny_project, monkeypatch):
    from pipeline.models import load_model
    from pipeline.training.checkpoint import read_method_info
    from pipeline.training.run import run_training

    root, request = tiny_project
    monkeypatch.chdir(root)
    request = dataclasses.replace(request, out="models/outputs")
    summary = run_training(request)
    out = root / request.out
    assert summary["epochs"] == 2 and 1 <= summary["best_epoch"] <= 2
    assert set(summary["val"]) >= {"i2t_r1", "i2t_r10", "t2i_r10", "rsum", "random_r10", "n_queries"}
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and history[0].startswith("epoch,")
    model = load_model(out / "best" / "model")
    info = read_method_info(out / "best")
    assert info["method"] == "medprobclip" and info["epoch"] == summary["best_epoch"]
    assert model.config.head.kind == "gaussian" and (out / "best" / "loss.safetensors").is_file()
    before = (out / "metrics.json").read_bytes(), (out / "best" / "model" / "model.safetensors").read_bytes()
    run_training(request)  # a completed run resumes at its end and rewrites identical outputs
    after = (out / "metrics.json").read_bytes(), (out / "best" / "model" / "model.safetensors").read_bytes()
    assert before == after


def test_resolve_config_reads_the_method_block_and_model_profile(tmp_path):
    import yaml

    from pipeline.training.config import resolve_config

    params = {
        "train": {"epochs": 1},
        "model": {"profile": "tiny", "tiny": {"head": {"dim": 8}}},
        "losses": {"medprobclip": {"lambda_text": 0.5}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = resolve_config("medprobclip", path, tokenizer="tok")
    assert cfg.method_cfg.lambda_text == 0.5 and cfg.model.head.dim == 8 and cfg.model.text.tokenizer == "tok"
    assert cfg.as_dict()["losses"]["medprobclip"]["lambda_text"] == 0.5
    params["losses"]["medprobclip"] = {"lamda_text": 0.5}
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="losses.medprobclip: unknown key 'lamda_text'.*lambda_text"):
        resolve_config("medprobclip", path)
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_config("clipp", path)


def test_a_method_block_overrides_shared_train_settings_for_that_method_only(tmp_path):
    import yaml

    from pipeline.training.config import fingerprint, resolve_config

    params = {
        "train": {"epochs": 3, "lr": 3e-3},
        "losses": {"clip": {"temperature_init": 0.05, "train": {"lr": 1.5e-3}}, "cxrclip": {}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    clip, cxrclip = resolve_config("clip", path), resolve_config("cxrclip", path)
    assert (clip.train.lr, clip.train.epochs, clip.method_cfg.temperature_init) == (1.5e-3, 3, 0.05)
    assert cxrclip.train.lr == 3e-3
    assert clip.as_dict()["train"]["lr"] == 1.5e-3 and clip.as_dict()["losses"]["clip"]["train"] == {
        "lr": 1.5e-3
    }
    params["losses"]["clip"]["train"] = {"lr": 1e-3}
    path.write_text(yaml.safe_dump(params))
    assert fingerprint(resolve_config("clip", path), "x") != fingerprint(clip, "x")
    params["losses"]["clip"]["train"] = {"lrr": 1e-3}
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"losses.clip.train: unknown key 'lrr' \(did you mean 'lr'"):
        resolve_config("clip", path)
    params["losses"]["clip"]["train"] = {"lr": -1.0}
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="losses.clip.train: need lr > 0"):
        resolve_config("clip", path)


def test_code_digest_changes_with_the_library_source(tmp_path):
    from pipeline.training.config import code_digest

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "loss.py").write_text("x = 1\n")
    before = code_digest(tmp_path)
    assert code_digest(tmp_path) == before
    (tmp_path / "sub" / "loss.py").write_text("x = 2\n")
    assert code_digest(tmp_path) != before
