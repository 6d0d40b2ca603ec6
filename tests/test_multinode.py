"""Multi-node training: two torchrun "nodes" (nproc_per_node=1 each) meet through the c10d rendezvous on
127.0.0.1 with gloo and end with the metrics one process gets at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_train import build_tiny_project

from pipeline.config import ConfigError
from pipeline.training import distributed as ddp
from pipeline.training.params import TrainParams, check_rendezvous

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = (
    "import dataclasses, json, sys; from pipeline.training.config import TrainRequest; "
    "from pipeline.training.run import launch; "
    "req = TrainRequest.from_json(sys.argv[1]); print('SUMMARY', json.dumps(launch(req)))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multinode_command_uses_c10d_rendezvous(monkeypatch):
    monkeypatch.delenv("PET_RDZV_ENDPOINT", raising=False)
    monkeypatch.delenv("PET_RDZV_ID", raising=False)
    cmd = ddp.torchrun_command("m", ["a"], 4, 2, "node1:29400", "job7")
    assert "--rdzv-backend=c10d" in cmd and "--rdzv-endpoint=node1:29400" in cmd and "--rdzv-id=job7" in cmd
    assert "--nnodes=2" in cmd and "--nproc-per-node=4" in cmd and "--standalone" not in cmd
    monkeypatch.setenv("PET_RDZV_ENDPOINT", "head:1234")
    assert "--rdzv-endpoint=head:1234" in ddp.torchrun_command("m", [], 1, 2, "node1:29400", "job7")
    single = ddp.torchrun_command("m", [], 2, 1)
    assert "--standalone" in single and not any("rdzv" in part for part in single)


@pytest.mark.parametrize(
    ("field", "value"), [("rdzv_endpoint", "node1"), ("rdzv_endpoint", "h:99999"), ("rdzv_id", "a b")]
)
def test_bad_rendezvous_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainParams(**{field: value})


def test_loopback_rendezvous_is_refused_for_several_nodes():
    several = TrainParams(nnodes=2)  # the default endpoint is 127.0.0.1
    with pytest.raises(
        ConfigError, match=r"train\.rdzv_endpoint 127\.0\.0\.1:29400 is a loopback .* train\.nnodes is 2"
    ):
        check_rendezvous(several, {})
    for endpoint in ("localhost:29400", "[::1]:29400"):
        with pytest.raises(ConfigError, match="loopback"):
            check_rendezvous(TrainParams(nnodes=2, rdzv_endpoint=endpoint), {})
    check_rendezvous(several, {"PET_RDZV_ENDPOINT": "127.0.0.1:29511"})  # explicit: nodes on one host
    check_rendezvous(TrainParams(nnodes=2, rdzv_endpoint="node1:29400"), {})
    check_rendezvous(TrainParams(), {})  # one node never meets anyone


def no_dropout_bert(root: Path, text: dict) -> Path:
    """A saved random BERT without dropout: dropout masks are drawn per rank, so only a dropout-free model
    can match the one-process run to float tolerance."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=text["vocab_size"],
        hidden_size=text["hidden_size"],
        num_hidden_layers=text["num_layers"],
        num_attention_heads=2,
        intermediate_size=text["intermediate_size"],
        max_position_embeddings=text["max_length"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    import torch

    torch.manual_seed(0)
    folder = root / "bert"
    BertModel(config).save_pretrained(folder)
    return folder


def write_params(root: Path, **train) -> Path:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"] |= train
    path = root / f"params-{train.get('nnodes', 1)}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def launch(root: Path, request, out: str, env: dict) -> subprocess.Popen:
    import dataclasses

    payload = dataclasses.replace(request, out=out).to_json()
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, payload],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_nodes_match_one_process(tmp_path):
    import dataclasses

    root, request = build_tiny_project(tmp_path, method="clip", epochs=3)
    params = yaml.safe_load((root / "params.yaml").read_text())
    # a ViT: the tiny profile's ResNet has batch norm, whose statistics are per rank by design
    vit = {"arch": "vit_tiny_patch16_224", "channels": None, "stem_width": None, "patch_size": 8}
    params["model"]["tiny"]["image"] |= vit | {"depth": 1, "embed_dim": 32, "num_heads": 2}
    text = params["model"]["tiny"]["text"]
    text |= {"name_or_path": str(no_dropout_bert(root, text)), "tokenizer": str(root / "tokenizer")}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    # the whole training split (16 studies) is one global batch: both runs see the same set each step
    same = {"batch_size": 16, "shuffle_buffer": 0, "workers": 0, "log_checkpoint": False}
    one = dataclasses.replace(request, params=str(write_params(root, **same)))
    # both "nodes" on this host: the loopback endpoint comes from the environment, which is trusted
    two = dataclasses.replace(request, params=str(write_params(root, **same, nnodes=2)))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env |= {"PET_RDZV_ENDPOINT": f"127.0.0.1:{free_port()}", "PET_RDZV_ID": "two-node-test"}

    nodes = [launch(root, two, f"models/node{i}", env) for i in range(2)]
    outs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, outs, strict=True):
        assert node.returncode == 0, stderr[:3000]
    summaries = [json.loads(stdout.split("SUMMARY ", 1)[1]) for stdout, _ in outs]
    # global rank 0 ran on exactly one node and wrote the outputs (checkpoint, metrics) there alone
    written = [i for i in range(2) if (root / f"models/node{i}" / "metrics.json").is_file()]
    assert len(written) == 1 and summaries[1 - written[0]] == {}
    assert f"global rank 0 on {socket.gethostname()} wrote them" in outs[1 - written[0]][0]
    assert not (root / f"models/node{1 - written[0]}" / "best").exists()
    distributed = summaries[written[0]]

    reference = launch(root, one, "models/single", env)
    stdout, stderr = reference.communicate(timeout=600)
    assert reference.returncode == 0, stderr[-3000:]
    single = json.loads(stdout.split("SUMMARY ", 1)[1])

    assert distributed["epochs"] == single["epochs"] == 3
    assert distributed["best_epoch"] == single["best_epoch"]
    assert distributed["final_train_loss"] == pytest.approx(single["final_train_loss"], rel=1e-4, abs=1e-5)
    assert distributed["val"].keys() == single["val"].keys()
    for key, value in single["val"].items():
        assert distributed["val"][key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
