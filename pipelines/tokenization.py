"""Train a tokenizer per model family with `tokenizers`, save it so `AutoTokenizer` can load it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pipelines.config import RunConfig, TokenizerConfig
from pipelines.errors import PipelineError
from pipelines.registry import Registry

TOKENIZER_KINDS = Registry("tokenizer kind")


@dataclass(frozen=True)
class TokenizerRecipe:
    """An untrained `tokenizers.Tokenizer`, its trainer, and the `transformers` wrapper's arguments."""

    tokenizer: Tokenizer
    trainer: trainers.Trainer
    wrapper_kwargs: dict
    """Special-token roles (`eos_token`, ...) and other `PreTrainedTokenizerFast` arguments."""
    post_processor: Callable[[Tokenizer], processors.PostProcessor] | None = None
    """Built after training, when the special tokens' ids are known."""


@TOKENIZER_KINDS.register("byte_bpe")
def byte_bpe(cfg: TokenizerConfig) -> TokenizerRecipe:
    """GPT-2 style byte-level BPE: any byte string is encodable, so there is no unknown token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    roles = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "pad_token": "<|pad|>"}
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(dict.fromkeys(roles.values())),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    return TokenizerRecipe(tokenizer, trainer, roles)


@TOKENIZER_KINDS.register("wordpiece")
def wordpiece(cfg: TokenizerConfig) -> TokenizerRecipe:
    """BERT WordPiece: `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with segment ids; `##` marks word pieces."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=cfg.lowercase, strip_accents=cfg.lowercase or None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    roles = {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    inputs = {"model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}  # segment ids for pairs
    trainer = trainers.WordPieceTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(roles.values()),
        continuing_subword_prefix="##",
        show_progress=True,
    )

    def post_processor(trained: Tokenizer) -> processors.PostProcessor:
        cls, sep = ("[CLS]", trained.token_to_id("[CLS]")), ("[SEP]", trained.token_to_id("[SEP]"))
        return processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
        )

    return TokenizerRecipe(tokenizer, trainer, roles | inputs, post_processor)


@TOKENIZER_KINDS.register("unigram")
def unigram(cfg: TokenizerConfig) -> TokenizerRecipe:
    """T5 / SentencePiece-style Unigram: `<pad>` 0, `</s>` 1, `<unk>` 2, sentinels `<extra_id_N>`; `A </s>`.

    Like T5's SentencePiece model, runs of whitespace (newlines included) become one space: the text is
    split on `▁`-marked words, and a layout-free vocabulary spends its entries on words instead.
    """
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    sentinels = [f"<extra_id_{i}>" for i in range(cfg.num_sentinels)]
    roles = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    trainer = trainers.UnigramTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[*roles.values(), *sentinels],
        unk_token="<unk>",
        show_progress=True,
    )

    def post_processor(trained: Tokenizer) -> processors.PostProcessor:
        eos = ("</s>", trained.token_to_id("</s>"))
        return processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[eos])

    return TokenizerRecipe(tokenizer, trainer, roles | {"extra_special_tokens": sentinels}, post_processor)


def train_tokenizer(cfg: TokenizerConfig, dataset: Dataset, text_column: str) -> PreTrainedTokenizerFast:
    """Train on `dataset[text_column]`, streamed in batches so the corpus is never one list in memory."""
    if not hasattr(dataset, "__len__"):
        raise PipelineError("train the tokenizer on in-memory data: unset data.streaming for train-tokenizer")
    recipe = TOKENIZER_KINDS.get(cfg.kind)(cfg)
    if cfg.max_training_documents is not None:
        dataset = dataset.select(range(min(cfg.max_training_documents, len(dataset))))
    recipe.tokenizer.train_from_iterator(
        _iter_text_batches(dataset, text_column), trainer=recipe.trainer, length=len(dataset)
    )
    if recipe.post_processor is not None:
        recipe.tokenizer.post_processor = recipe.post_processor(recipe.tokenizer)
    return PreTrainedTokenizerFast(tokenizer_object=recipe.tokenizer, **recipe.wrapper_kwargs)


def train_and_save(cfg: RunConfig, overwrite: bool = False) -> None:
    """Train the run's tokenizer on its data and save it to `tokenizer.path`; an existing one is replaced only with
    `overwrite`."""
    from pipelines.dir_lock import lock_directory

    target = Path(cfg.tokenizer.path)
    with lock_directory(target, "tokenizer.path"):  # one writer: two trainings would mix their files
        if (target / "tokenizer.json").exists() and not overwrite:
            raise PipelineError(f"a tokenizer already exists at {target}; pass --overwrite to replace it")
        tokenizer = _train_on_run_data(cfg)
        tokenizer.save_pretrained(str(target))
    print(f"saved a {len(tokenizer)}-token {cfg.tokenizer.kind} tokenizer to {target}")


def _train_on_run_data(cfg: RunConfig) -> PreTrainedTokenizerFast:
    """A tokenizer trained on the config's data (on the templated text, for text-to-text)."""
    from pipelines.data.sources import load_raw_datasets

    if cfg.data.input_template and cfg.data.target_template:  # text-to-text: train on what is read and written
        from pipelines.data.text_to_text import template_fields, templated_text

        fields = template_fields(cfg.data.input_template) + template_fields(cfg.data.target_template)
        raw = load_raw_datasets(cfg.data, cfg.seed, {f"template field '{f}'": f for f in fields})
        texts = raw["train"].map(
            templated_text, batched=True, remove_columns=raw["train"].column_names, desc="templating",
            fn_kwargs={"input_template": cfg.data.input_template, "target_template": cfg.data.target_template},
        )  # fmt: skip
        return train_tokenizer(cfg.tokenizer, texts, "text")
    raw = load_raw_datasets(cfg.data, cfg.seed)
    return train_tokenizer(cfg.tokenizer, raw["train"], cfg.data.text_column)


def _iter_text_batches(dataset: Dataset, text_column: str, batch_size: int = 1000) -> Iterator[list[str]]:
    for batch in dataset.iter(batch_size=batch_size):
        yield batch[text_column]


def append_eos_to_sequences(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Make a tokenizer that adds no special tokens end every sentence with EOS (`A <eos>`, `A <eos> B <eos>`).

    A causal classifier reads its decision off the last token; with EOS there it is always the same kind
    of token, and because the rule lives in the saved tokenizer, `pipeline("text-classification")`
    encodes exactly as training did. Tokenizers that already add special tokens are returned unchanged.
    """
    if tokenizer("")["input_ids"]:
        return tokenizer
    eos = (tokenizer.eos_token, tokenizer.eos_token_id)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos[0]}", pair=f"$A {eos[0]} $B {eos[0]}", special_tokens=[eos]
    )
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a trained tokenizer directory, with a clear error if it is missing or incomplete."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise PipelineError(
            f"no tokenizer at {path} (expected {path / 'tokenizer.json'}); "
            "train one with `python -m pipelines train-tokenizer --config <same config>`"
        )
    for name in TOKENIZER_FILES:
        check_json_file(path / name, "train the tokenizer again")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # noqa: BLE001 - valid JSON that `tokenizers` rejects raises a bare Exception
        raise PipelineError(f"cannot load the tokenizer at {path}: {str(err).strip().splitlines()[0]}") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
"""The JSON files `save_pretrained` writes for a fast tokenizer (the last only in older `transformers`)."""


def check_json_file(path: Path, remedy: str) -> None:
    """Refuse a JSON file that exists but cannot be parsed (cut off by a crash or a full disk), naming it."""
    if not path.exists():
        return
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}; cut off?): {remedy}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path} cannot be read ({err}): {remedy}") from None
