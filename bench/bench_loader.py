"""Training-loader throughput: WebDataset shards vs the CSV+JPEG dataset on the same full-size studies.

Both produce identical batches (two augmented views, two tokenised sections); the CSV path decodes the
full-resolution JPEGs every epoch (with draft decoding already — a fair, not a strawman, baseline).

    .venv/bin/python bench/bench_loader.py [--studies 48] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_shards import make_fullsize_fixture
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.data import LoaderConfig, create_csv_train_loader, create_train_loader
from pipeline.shards import ShardsConfig, create_shards


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    corpus = [
        "No focal consolidation. No pleural effusion or pneumothorax.",
        "No acute cardiopulmonary process.",
    ]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def samples_per_second(loader) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += batch["study_id"].shape[0]
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tok = tiny_tokenizer()
    cfg = LoaderConfig(image_size=224, batch_size=16, workers=args.workers, shuffle_buffer=64)
    with tempfile.TemporaryDirectory() as tmp:
        mimic, studies = make_fullsize_fixture(Path(tmp), args.studies)
        shard_cfg = ShardsConfig(image_size=256, samples_per_shard=8, splits=("train",))
        create_shards(studies, mimic, Path(tmp) / "shards", shard_cfg)
        best = {"shards": 0.0, "csv+jpeg": 0.0}
        for epoch in range(args.repeats):  # best of N: the machine is shared
            shard_rate, n = samples_per_second(
                create_train_loader(Path(tmp) / "shards" / "train", tok, cfg, epoch)
            )
            csv = create_csv_train_loader(studies / "train.csv", mimic, tok, cfg, epoch, shard_image_size=256)
            csv_rate, n_csv = samples_per_second(csv)
            assert n == n_csv == args.studies
            best = {"shards": max(best["shards"], shard_rate), "csv+jpeg": max(best["csv+jpeg"], csv_rate)}
    print(f"{args.studies} studies (full-size JPEGs), {args.workers} loader workers, batch 16, 224 px")
    for name, rate in best.items():
        print(f"{name:<10} {rate:8.1f} samples/s   {rate / best['csv+jpeg']:6.2f}x csv+jpeg")


if __name__ == "__main__":
    main()
