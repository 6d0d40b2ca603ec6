"""WordPiece vocabulary for the tiny profile, trained on the training split's report sections.

Saved in the Hugging Face format, so ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it exactly
like a pretrained model's tokenizer and the data loader needs no special case.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEXT_COLUMNS = ("findings", "impression")


@dataclass(frozen=True)
class TokenizerParams:
    """The ``tokenizer`` section of params.yaml."""

    vocab_size: int = 4096
    min_frequency: int = 2
    lowercase: bool = True
    max_length: int = 128  # model_max_length saved with the tokenizer (truncation length)

    def __post_init__(self) -> None:
        if self.vocab_size <= len(SPECIAL_TOKENS) or self.min_frequency < 1 or self.max_length < 2:
            raise ValueError("need vocab_size > 5, min_frequency ≥ 1 and max_length ≥ 2")


def _clean(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if isinstance(text, str) and text.strip():
            yield text


def _word_alphabet(tok, texts: list[str]) -> list[str]:
    """Sorted characters of the normalised, pre-tokenised corpus."""
    chars: set[str] = set()
    for text in texts:
        normalised = tok.normalizer.normalize_str(text)
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalised):
            chars.update(word)
    return sorted(chars)


def train_wordpiece(texts: Iterable[str], params: TokenizerParams = TokenizerParams()):
    """Train a BERT-style WordPiece tokenizer; blank or non-string texts are skipped.

    Returns a ``transformers.PreTrainedTokenizerFast``; equal texts give byte-identical saved files.
    The trainer breaks ties between equally frequent merges by token id, and on its own it numbers the
    ``##c`` continuation pieces in hash-map order, which differs between processes. Registering every
    piece of the alphabet up front (sorted) fixes those ids; the final tokenizer is then rebuilt from the
    learnt vocabulary with only the five real special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(_clean(texts))
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=params.lowercase, strip_accents=params.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet = _word_alphabet(tok, corpus)
    if not alphabet:
        raise PipelineError("no report text to train the tokenizer on (all findings/impressions are blank)")
    seeded = [*SPECIAL_TOKENS, *alphabet, *(f"##{c}" for c in alphabet)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=max(params.vocab_size, len(seeded)),
        min_frequency=params.min_frequency,
        special_tokens=seeded,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    vocab = tok.get_vocab(with_added_tokens=True)
    final = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    final.normalizer, final.pre_tokenizer = tok.normalizer, tok.pre_tokenizer
    final.add_special_tokens(list(SPECIAL_TOKENS))
    final.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    final.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=final,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=params.max_length,
    )


def save_tokenizer(tokenizer, out: str | Path) -> Path:
    """Write the tokenizer folder atomically (``tokenizer.json`` + ``tokenizer_config.json`` ...)."""
    with atomic_dir(out) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return Path(out)


def read_report_texts(path: Path) -> list[str]:
    """Findings then impression of each study of a study CSV, in file order (blank cells are dropped by
    the trainer)."""
    from pipeline.shards.rows import read_study_frame

    if not path.is_file():
        raise PipelineError(f"{path}: training study CSV not found (run the `studies` stage first)")
    frame = read_study_frame(path)
    missing = [c for c in TEXT_COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {missing}; expected the study CSV contract")
    return [text for row in frame.itertuples(index=False) for text in (row.findings, row.impression)]
