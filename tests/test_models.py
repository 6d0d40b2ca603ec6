"""Tiny-profile dual encoder: shapes, every method × head end to end, save/load, offline paper profile."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.losses import LOSSES, create_loss
from pipeline.models import (
    PAPER,
    TINY,
    WeightsNotFoundError,
    create_model,
    load_model,
    model_params,
    save_model,
)
from pipeline.models import encoders as encoders_module

B, H = 2, TINY.image.img_size


def make_batch(views: int = 2, sections: int = 2, length: int = 12) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (B, sections, length), generator=g)
    mask = torch.ones_like(ids)
    mask[:, :, length - 3 :] = 0
    labels = torch.tensor([[1.0, 0, -1, float("nan"), 1, 0, 0, 0, 0, 0, 0, 1, 0, 0]] * B)
    labels[1, 0] = 0
    images = torch.randn(B, views, 1, H, H, generator=g)
    return {"images": images, "input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.fixture(scope="module")
def models() -> dict:
    return {kind: create_model(TINY, head=kind, seed=0) for kind in ("deterministic", "gaussian")}


def run(model, batch):
    return model(batch["images"], batch["input_ids"], batch["attention_mask"])


def test_output_dict_shapes(models):
    batch = make_batch()
    det, gau = run(models["deterministic"], batch), run(models["gaussian"], batch)
    assert sorted(det) == ["img_0", "img_1", "txt_0", "txt_1"]
    dim = TINY.head.dim
    assert det["img_1"]["emb"].shape == (B, dim)
    assert torch.allclose(det["txt_0"]["emb"].norm(dim=-1), torch.ones(B))
    assert gau["img_0"]["mu"].shape == gau["txt_1"]["logvar"].shape == (B, dim)
    assert gau["img_0"]["logvar"].abs().max() <= 6.0
    assert gau["img_0"]["feat"].shape == (B, models["gaussian"].image.num_features)


def test_encode_image_and_text_match_forward(models):
    model, batch = models["gaussian"].eval(), make_batch()
    out = run(model, batch)
    img = model.encode_image(batch["images"][:, 1])
    txt = model.encode_text(batch["input_ids"][:, 0], batch["attention_mask"][:, 0])
    assert torch.allclose(img["mu"], out["img_1"]["mu"], atol=1e-5)
    assert torch.allclose(txt["logvar"], out["txt_0"]["logvar"], atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, V, 1, H, W\]"):
        model(batch["images"][:, 0], batch["input_ids"], batch["attention_mask"])


CASES = [(name, head) for name, cls in sorted(LOSSES.items()) for head in cls.heads]


@pytest.mark.parametrize(("name", "head"), CASES)
def test_every_method_and_head_trains_one_step(name, head, models):
    model = models[head].train()
    model.zero_grad()
    loss = create_loss(name, {"head": head}, embed_dim=TINY.head.dim)
    cls = LOSSES[name]
    batch = make_batch()
    batch = {
        **batch,
        "images": batch["images"][:, : cls.views],
        "input_ids": batch["input_ids"][:, : cls.sections],
    }
    batch["attention_mask"] = make_batch()["attention_mask"][:, : cls.sections]
    batch = loss.prepare_batch(batch, torch.Generator().manual_seed(0))
    terms = loss(run(model, batch), batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    grads = [p.grad for p in [*model.parameters(), *loss.parameters()] if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_param_groups_cover_every_parameter_once(models):
    model = models["gaussian"]
    decay, no_decay = model.param_groups(1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert all(p.ndim >= 2 for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("position_embeddings" in names[id(p)] for p in no_decay["params"])
    assert any(
        names[id(p)].startswith("image.backbone.") and "bn" in names[id(p)] for p in no_decay["params"]
    )


def test_seeded_creation_is_deterministic():
    a, b = create_model(TINY, seed=3), create_model(TINY, seed=3)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_save_load_round_trip(tmp_path, models):
    model = models["gaussian"].eval()
    save_model(model, tmp_path / "m1")
    save_model(model, tmp_path / "m2")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "m1" / name).read_bytes() == (tmp_path / "m2" / name).read_bytes()
    loaded = load_model(tmp_path / "m1").eval()
    assert loaded.config == model.config
    batch = make_batch()
    with torch.no_grad():
        a, b = run(model, batch), run(loaded, batch)
    for key in a:
        for field in a[key]:
            assert torch.equal(a[key][field], b[key][field])
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        load_model(tmp_path / "missing")


VIT = {"arch": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32}
VIT |= {"num_heads": 2, "channels": None, "stem_width": None, "pool": "token"}


def test_pooling_options_build():
    vit = model_params({"tiny": {"image": VIT, "text": {"pool": "cls"}}}).tiny
    model = create_model(vit, head="deterministic", seed=0)
    assert model.image.backbone.pos_embed.shape[1] == 1 + (32 // 8) ** 2  # img_size reaches the ViT
    images = torch.randn(B, 2, 1, 32, 32)
    out = model(images, make_batch()["input_ids"], make_batch()["attention_mask"])
    assert out["txt_1"]["emb"].shape == (B, TINY.head.dim)


def test_tiny_image_tower_is_a_size_agnostic_cnn(models):
    tower = models["deterministic"].image.eval()
    assert tower.backbone.__class__.__name__ == "ResNet"
    assert [s.out_channels for s in tower.backbone.modules() if hasattr(s, "out_channels")][
        -1
    ] == TINY.image.channels[-1]
    with torch.no_grad():
        for size in (H, 64, 128):
            assert tower(torch.randn(3, 1, size, size)).shape == (3, tower.num_features)


def test_per_method_logvar_init_overrides_the_head():
    model = create_model(TINY, head="gaussian", logvar_init=-4.0, seed=0)
    assert model.config.head.logvar_init == -4.0 and model.config.head.kind == "gaussian"
    assert torch.equal(model.image_head.logvar.bias, torch.full((TINY.head.dim,), -4.0))
    assert create_model(TINY, head="gaussian", seed=0).config.head.logvar_init == TINY.head.logvar_init


def test_architecture_overrides_fail_clearly():
    with pytest.raises(ValueError, match="unknown timm architecture 'resnet_nope'"):
        create_model(dataclasses.replace(TINY, image=dataclasses.replace(TINY.image, arch="resnet_nope")))
    bad = dataclasses.replace(TINY, image=dataclasses.replace(TINY.image, patch_size=8))
    with pytest.raises(ValueError, match="resnet10t.*rejects an override.*patch_size"):
        create_model(bad)


def test_paper_profile_fails_fast_without_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(encoders_module, "cached_file", lambda repo, filename: None)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="hf download timm/vit_base_patch16_224.augreg_in21k"):
        create_model(PAPER)
    local = dataclasses.replace(PAPER.image, weights=str(tmp_path / "vit"))
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "vit")):
        create_model(dataclasses.replace(PAPER, image=local))
    text_only = dataclasses.replace(PAPER, image=TINY.image)
    with pytest.raises(WeightsNotFoundError, match="BiomedBERT.*not found offline"):
        create_model(text_only)
    assert time.monotonic() - start < 5.0


def test_model_params_override_their_own_profile():
    params = model_params({"profile": "paper", "paper": {"image": {"weights": "/w"}, "head": {"dim": 256}}})
    chosen = params.selected()
    assert chosen.image.weights == "/w" and chosen.image.arch == PAPER.image.arch and chosen.head.dim == 256
    assert params.tiny == TINY
    with pytest.raises(ConfigError, match="did you mean 'img_size'"):
        model_params({"tiny": {"image": {"img_sze": 32}}})
    with pytest.raises(ConfigError, match="profile"):
        model_params({"profile": "huge"})
