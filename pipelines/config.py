"""One frozen, typed config per run: YAML file + `--set key.path=value` overrides, validated up front.

Every field's docstring is the string right below it. Derived values (vocabulary size from the
tokenizer, position embeddings from the block size, ...) are computed where they are used and never
written back, so `config.yaml` in a run directory is exactly what the user asked for.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml

from pipelines.errors import PipelineError


class ConfigError(PipelineError):
    """An invalid config: unknown key, wrong type, unknown choice or YAML syntax error."""


@dataclass(frozen=True)
class Registered:
    """Marks a name field whose valid values are the entries of a registry (`module:attribute`). A new data source,
    architecture, objective or tokenizer kind is one `register` call in its own module: configs accept its name
    with no change here. The registry's module is imported only when a value is checked, so importing this
    module stays free of torch."""

    registry: str

    def check(self, value: str, key: str, source: str) -> None:
        module, _, attribute = self.registry.partition(":")
        names = list(getattr(importlib.import_module(module), attribute))
        if value not in names:
            raise ConfigError(f"{source}: '{key}' is {value!r}; valid choices: {', '.join(repr(c) for c in names)}")


SourceName = Annotated[str, Registered("pipelines.data.sources:SOURCES")]
TokenizerKind = Annotated[str, Registered("pipelines.tokenization:TOKENIZER_KINDS")]
ArchName = Annotated[str, Registered("pipelines.models:MODELS")]
ObjectiveName = Annotated[str, Registered("pipelines.objectives:OBJECTIVES")]


@dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it is cut into training examples."""

    source: SourceName = "builtin"
    """`builtin`: Python standard-library docs (no download); `builtin_code`: (code, summary) pairs from the
    standard library's functions; `files`: local files; `parallel`: line-aligned files, one per column
    (`{path}.{column}` for each of `column_names`, e.g. Multi30K's train.en/train.de); `hub`: a hub dataset."""
    path: str | None = None
    """files: a file, glob or directory; parallel: the common prefix; hub: the dataset name (e.g. `wikitext`)."""
    name: str | None = None
    """hub: the dataset config name (e.g. `wikitext-2-raw-v1`)."""
    split: str = "train"
    """hub: the split to train on."""
    validation_path: str | None = None
    """files: a file, glob or directory held out for validation; parallel: its common prefix."""
    validation_split: str | None = None
    """hub: the split to validate on."""
    validation_fraction: float = 0.05
    """Fraction of documents carved out (deterministically, by `seed`) when the source has no validation set."""
    text_column: str = "text"
    """Column that holds the text (the first sentence, for classification)."""
    text_pair_column: str | None = None
    """Classification: column with the second sentence of a pair (None: single sentences)."""
    label_column: str = "label"
    """Classification: column with the label (integers or strings)."""
    labels: list[str] | None = None
    """Classification: the label names in id order (None: the sorted distinct labels of the training data)."""
    label_map: dict[str, str] | None = None
    """Classification: raw label value → label name, applied before `labels` (e.g. {"0": negative})."""
    preprocess: str | None = None
    """A named preprocessing step for a known file layout (`trec_coarse`, `trec_fine`); see data/preprocess.py."""
    column_names: list[str] | None = None
    """`.csv`/`.tsv` files without a header row: the column names, in order; parallel: the file suffixes."""
    format: Literal["txt", "json", "jsonl", "csv", "tsv", "parquet"] | None = None
    """File type when the suffix does not tell (e.g. `txt` for TREC's `.label` files; None: from the suffix)."""
    encoding: str = "utf-8"
    """Text encoding of `.txt`/`.csv`/`.tsv` files (e.g. `latin-1`)."""
    sample_by: Literal["line", "paragraph", "document"] = "paragraph"
    """`.txt` files: one example per line, per blank-line-separated paragraph, or per file."""
    max_documents: int | None = None
    """Keep only the first N training documents (quick experiments and tests)."""
    max_train_examples: int | None = None
    """Classification: train on a stratified subset of N labelled examples, drawn by `seed` (a learning curve over
    label counts, one flag per point); validation stays whole."""
    block_size: int = 128
    """Tokens per training example; documents are packed into blocks of this length."""
    shift_blocks: bool = False
    """Pretraining: cut the training text at a new offset each epoch (drawn from the seed and the epoch), so a
    text trained on for several passes is seen in new contexts instead of the same blocks again (in-memory and
    prepared data; a stream is cut the same way each pass)."""
    num_proc: int | None = None
    """Worker processes for `datasets.map` preprocessing (None: in-process)."""
    streaming: bool = False
    """Read the source lazily (corpora larger than memory or disk): tokenized and packed on the fly, shuffled
    in a seeded buffer, and dispatched across processes by accelerate."""
    shuffle_buffer: int = 10_000
    """Streaming: blocks held in the shuffle buffer."""
    prepared_path: str | None = None
    """Directory of memory-mapped token files: `prepare` writes it once, `pretrain` then reads it instead."""
    input_template: str | None = None
    """Text-to-text: the model input as a Python format string over a record's fields
    (e.g. `translate English to German: {en}`, `{instruction}\n{input}`)."""
    target_template: str | None = None
    """Text-to-text: the expected output, likewise (e.g. `{de}`, `{output}`)."""
    empty_targets: Literal["refuse", "drop"] = "refuse"
    """Text-to-text records whose target fields are missing or blank: refuse the data, or drop them (counted)."""
    mixture: list[MixtureSource] | None = None
    """Text-to-text: several sources trained at once, sampled by rate (replaces this section's own source)."""


@dataclass(frozen=True)
class MixtureSource:
    """One source of a text-to-text mixture: where to read, how to template it, and how often to sample it."""

    name: str | None = None
    """Label for logs and results (None: the data path or source)."""
    kind: Literal["text_to_text", "span_corruption"] = "text_to_text"
    """`text_to_text`: templated (input, target) pairs; `span_corruption`: raw text denoised as in T5 pretraining."""
    rate: float = 1.0
    """Relative sampling weight; rates are normalised over the mixture."""
    data: DataConfig = field(default_factory=DataConfig)
    """Source, columns and templates (lengths come from the run's own `data.block_size` and the objective)."""


@dataclass(frozen=True)
class TokenizerConfig:
    """The tokenizer a run loads, and how `train-tokenizer` trains it."""

    path: str = "tokenizers/gpt-builtin"
    """Directory the tokenizer is saved to by `train-tokenizer` and loaded from by `pretrain`."""
    kind: TokenizerKind = "byte_bpe"
    """`byte_bpe` (GPT-2 style byte-level BPE), `wordpiece` (BERT: [CLS] [SEP] [MASK] [PAD] [UNK]) or
    `unigram` (T5, SentencePiece-style: <pad> </s> <unk> and sentinels <extra_id_0>...)."""
    vocab_size: int = 4096
    """Target vocabulary size, special tokens included."""
    min_frequency: int = 2
    """Minimum pair frequency for a merge."""
    max_training_documents: int | None = None
    """Train the tokenizer on at most this many documents (None: all)."""
    lowercase: bool = False
    """`wordpiece`: lower-case (and strip accents from) the text before tokenizing."""
    num_sentinels: int = 100
    """`unigram`: sentinel tokens <extra_id_0>...<extra_id_{n-1}> for span corruption."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and size of the model built from scratch."""

    arch: ArchName = "gpt2"
    """`gpt2` (learned positions, GELU MLP, LayerNorm), `llama` (rotary, SwiGLU, RMSNorm), `qwen3` (llama
    with QK-norm), `bert` (encoder), `modernbert` (pre-norm encoder: rotary, GeGLU, no biases), `t5`
    (encoder-decoder, v1.1 gated GELU); baselines: `textcnn`, `bilstm` (classifiers), `lstm_lm`, `lstm_seq2seq`
    (encoder-decoder with attention)."""
    init_from: str | None = None
    """Fine-tuning: a run directory or export to start from (None: from scratch, shaped by the fields below)."""
    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 4
    """Number of transformer blocks (LSTMs: stacked layers; t5/lstm_seq2seq: encoder layers)."""
    num_decoder_layers: int | None = None
    """t5, lstm_seq2seq: decoder layers (None: `num_layers`)."""
    num_heads: int = 4
    """Attention heads per block; must divide `hidden_size`."""
    intermediate_size: int | None = None
    """MLP width (None: 4 x hidden for gpt2, 8/3 x hidden rounded to 64 for llama, qwen3)."""
    dropout: float = 0.0
    """Dropout probability (gpt2: embeddings, attention and residual paths; llama, qwen3: attention only)."""
    residual_dropout: float = 0.0
    """llama, qwen3: dropout on each block's attention and MLP outputs before they join the residual stream (GPT-2's
    `resid_pdrop`, which transformers' Llama-style blocks lack). On the tinyshakespeare benchmark it did not beat
    weight decay alone at equal steps (docs/benchmarks.md, "Tenth sweep"), so no shipped recipe sets it."""
    max_position_embeddings: int | None = None
    """Longest sequence the model accepts (None: `data.block_size`)."""
    vocab_size: int | None = None
    """Embedding rows (None: the tokenizer's size rounded up to a multiple of 64 for faster matmuls)."""
    tie_word_embeddings: bool = True
    """Share input embeddings and output projection."""
    embedding_size: int | None = None
    """Baselines: width of the token embeddings (None: `hidden_size`)."""
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    """textcnn: widths of the parallel convolutions."""
    num_filters: int = 100
    """textcnn: feature maps per convolution width."""
    pooling: Literal["max", "mean", "last"] = "max"
    """bilstm: how the sentence vector is read off the states (max/mean over time, or the final states)."""
    embeddings_from: str | None = None
    """Baselines: initialise the token embeddings from this export's input embeddings (same tokenizer)."""
    attn_implementation: Literal["sdpa", "eager"] | None = None
    """Transformers: how attention is computed, `sdpa` (PyTorch's fused kernels) or `eager` (matmuls and a softmax);
    None: transformers' default (sdpa). On CPU in bf16 at short contexts eager is much the faster (docs/benchmarks.md,
    "Attention on CPU"); not saved in the export."""
    attention: Literal["general", "dot", "bahdanau"] = "general"
    """lstm_seq2seq: how the decoder scores the source states (Luong's general or dot product, or Bahdanau's MLP)."""
    lora: LoraConfig | None = None
    """Fine-tune `init_from` with low-rank adapters (LoRA, through `peft`) instead of every weight (None: off)."""


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters: each target matrix W trains as W + (alpha / r) B A, with B (d x r) and A (r x d); the
    pretrained weights stay frozen, the task head trains fully, and the export merges the adapters into W."""

    r: int = 8
    """Rank of the adapters."""
    alpha: float = 16.0
    """Scale: the update is multiplied by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapters' input."""
    target_modules: list[str] | None = None
    """Names of the modules to adapt (None: the attention projections: gpt2 `c_attn`; llama `q_proj`, `v_proj`;
    bert `query`, `value`; modernbert `Wqkv`; t5 `q`, `v`)."""


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective, which decides how batches are collated and labelled."""

    name: ObjectiveName = "clm"
    """`clm`: next-token prediction; `mlm`: masked-token prediction; `cls`: sequence classification;
    `span`: T5 span corruption on raw text; `seq2seq`: text-to-text (encoder-decoder); `instruct`:
    text-to-text for a causal LM (prompt, then response; loss on the response only)."""
    mlm_probability: float = 0.15
    """`mlm`: fraction of tokens selected for prediction (80% → [MASK], 10% → random, 10% unchanged)."""
    whole_word_mask: bool = False
    """`mlm`: select whole words (all WordPiece pieces of a word) rather than single tokens."""
    noise_density: float = 0.15
    """`span`: fraction of tokens corrupted."""
    mean_span_length: float = 3.0
    """`span`: mean length of a corrupted span."""
    max_target_length: int = 128
    """Text-to-text: longest target, in tokens (EOS included)."""
    overlong: Literal["truncate", "refuse"] = "truncate"
    """Text-to-text inputs longer than `data.block_size` or targets longer than `max_target_length`:
    cut (and count them in the results) or refuse the data."""
    metrics: list[str] | None = None
    """Metrics to report (None: `accuracy` for `cls`, `rouge` and `exact_match` for text-to-text). `cls`: accuracy,
    f1, f1_macro, precision, recall, matthews_correlation; text-to-text: rouge, bleu, chrf, exact_match."""
    num_beams: int = 1
    """Text-to-text evaluation: beams for generation (1: greedy)."""
    max_new_tokens: int = 64
    """Text-to-text evaluation: longest generated output."""
    label_smoothing: float = 0.0
    """Training loss only: the target distribution gives this share of its mass uniformly to the vocabulary (or the
    classes), as in the Transformer's translation recipe (0.1); 0: plain cross-entropy. Evaluation losses stay plain."""
    no_repeat_ngram_size: int | None = None
    """Text-to-text generation (evaluation, and the export's default for `generate`): never repeat an n-gram of this
    many tokens (None: off). Small models decoding greedily fall into loops ("she was she was ..."); 3 stops them."""


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer and its learning-rate schedule."""

    name: Literal["adamw", "muon", "normuon"] = "adamw"
    """`adamw`, or `muon`: Muon (orthogonalised momentum, `torch.optim.Muon`, its step scaled to AdamW's RMS so the
    same learning rate applies) on the 2-D matrices inside the transformer blocks, AdamW on everything else
    (embeddings, output and classification heads, norms, biases, and every baseline's weights); or `normuon`:
    Muon that also evens out the update's size across each matrix's output neurons (NorMuon), at the same rate."""
    muon_momentum: float = 0.95
    """`muon`, `normuon`: Nesterov momentum of the Muon part."""

    learning_rate: float = 2e-3
    """Peak learning rate."""
    weight_decay: float = 0.1
    """Decoupled weight decay, applied to matrices only (not biases, norms)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.95
    """AdamW beta2."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""
    lr_scheduler_type: Literal["cosine", "linear", "constant_with_warmup", "warmup_stable_decay"] = "cosine"
    """Decay after warmup. `warmup_stable_decay` holds the peak rate and decays (1 - sqrt) over the last
    `decay_fraction` of `train.max_steps`: the run can be extended, or stopped early, with little lost."""
    decay_fraction: float = 0.2
    """`warmup_stable_decay`: fraction of `train.max_steps` (or of `train.max_runtime`, then below 1) spent decaying
    to zero."""
    warmup_steps: int = 30
    """Linear warmup, in optimizer steps."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    embedding_lr_scale: float | None = None
    """Learning-rate multiplier for the token embedding table and an output layer tied to it (None: the
    architecture's own: sqrt(d_model) for t5, whose table starts sqrt(d_model) times larger than its matrices;
    1 for the rest)."""
    query_lr_scale: float | None = None
    """Learning-rate multiplier for attention query weights (None: the architecture's own: 1/sqrt(d_kv) for t5,
    which folds attention's 1/sqrt(d_kv) into its query weights; 1 for the rest)."""
    fused: bool = True
    """PyTorch's fused AdamW kernel, on every device (off: torch's loop over the tensors). On 2 CPU cores it made
    an AdamW step of the BERT and T5 presets 2.5-4.6 times faster (docs/benchmarks.md, "Fused AdamW")."""

    @property
    def muon(self) -> bool:
        """Whether the block matrices get Muon (`muon` or `normuon`)."""
        return self.name in ("muon", "normuon")


@dataclass(frozen=True)
class TrainConfig:
    """The loop: how long, how big, how often to log, evaluate and checkpoint."""

    max_steps: int = 500
    """Optimizer steps to train for (the learning-rate schedule spans them)."""
    max_runtime: float | None = None
    """Training-time budget in seconds (evaluation and checkpointing excluded): training stops, evaluates and
    exports at the first step past it (None: no budget). Set `max_steps` to about what fits, so the schedule
    still decays."""
    per_device_train_batch_size: int = 16
    """Examples per process per micro-batch."""
    per_device_eval_batch_size: int = 32
    """Examples per process per evaluation batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None
    """Autocast mode (None: whatever `accelerate launch` / `accelerate config` says); fp16 uses loss scaling."""
    mixed_precision_fallback: bool = False
    """When the device cannot do the requested mode (e.g. bf16 on an old GPU): fall back to fp32 instead of failing."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    deterministic: bool | None = None
    """PyTorch's deterministic algorithms, so that a seed repeats a run exactly (None: on where no GPU is used, at
    no measured cost; off on GPUs, where some kernels are slower that way). Without them a compiled run on CPU does not
    repeat: inductor accumulates the embedding table's gradient with atomic adds, whose order varies between runs
    (docs/benchmarks.md, "Repeatable compiled runs")."""
    torch_compile: bool = False
    """Compile the model's training forward with `torch.compile` (inductor), inside accelerate's autocast so that
    AOTAutograd's cache serves later runs; evaluation runs uncompiled; a clean compiler state each run. On CPU
    inductor needs a C++ compiler."""
    peak_flops: float | None = None
    """Per-device peak FLOP/s for MFU (None: known GPUs' bf16/fp16 peak; otherwise MFU is not reported)."""
    logging_steps: int = 10
    """Log training loss every N optimizer steps."""
    eval_steps: int = 100
    """Evaluate every N optimizer steps (and always at the end)."""
    eval_max_batches: int | None = 50
    """Evaluate on at most this many batches per process (None: the whole validation set)."""
    save_steps: int = 100
    """Write a resumable checkpoint every N optimizer steps."""
    save_total_limit: int = 2
    """Keep only the newest N checkpoints."""
    report_to: Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio",
                       "none"] = "tensorboard"  # fmt: skip
    """Tracker that accelerate logs to, besides `metrics.jsonl` (its package must be installed, e.g. `pip install
    wandb`); `none` for none."""
    dataloader_num_workers: int = 0
    """Background workers per dataloader."""
    group_by_length: bool = False
    """Batch training examples of similar length together (shuffled groups of 50 batches, each sorted by length,
    as transformers' Trainer does): less padding, so cheaper steps on sentences and text-to-text pairs of mixed
    lengths (packed text, all one length, gains nothing). Streaming data, read in order, refuses it."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement of `metric_for_best_model`, keeping the best weights."""
    metric_for_best_model: str = "loss"
    """Evaluation metric (without the `eval_` prefix) that early stopping watches."""


@dataclass(frozen=True)
class RunConfig:
    """One run: everything needed to reproduce it."""

    output_dir: str = "runs/gpt-tiny"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/, eval_results.json."""
    seed: int = 42
    """Seed for initialisation, data order, dropout and the validation carve-out."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data source and preprocessing."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Tokenizer to train or load."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model architecture."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """Training objective."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training loop."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, as written to `config.yaml`."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML file (or start from the defaults), apply `key.path=value` overrides, validate."""
    raw = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        _apply_override(raw, item)
    source = str(path) if path is not None else "<defaults>"
    return parse_config(raw, source)


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Build a validated `RunConfig` from a nested dict."""
    cfg = _build(RunConfig, raw, prefix="", source=source)
    _check_values(cfg)
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load one YAML file, following `extends: other.yaml` (relative to the file) recursively."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` loops back to a file that extends it")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    return _deep_merge(_read_yaml(path.parent / parent, (*seen, path.resolve())), raw)


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """`train.max_steps=100` → raw["train"]["max_steps"] = 100 (the value is parsed as YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    value = _check_override(key.strip(), value, item)
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


def _check_override(key: str, value: Any, item: str) -> Any:
    """The value to set. A `--set` typo or wrong type is the command's fault, not the config file's: name the
    `--set`. A text field keeps its text as typed: a template such as `{answer}` is not a YAML mapping."""
    tp: Any = RunConfig
    hint: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):  # inside a mapping or list field (e.g. data.label_map): the file decides
            return value
        names = [f.name for f in dataclasses.fields(tp)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            suggestion = f" (did you mean '{'.'.join([*parts[:i], close[0]])}'?)" if close else ""
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(
                f"--set {item}: unknown key '{key}'{suggestion}; valid keys in {where}: {', '.join(names)}"
            )
        hint = typing.get_type_hints(tp, include_extras=True)[part]
        tp = _unwrap_optional(hint)
    if dataclasses.is_dataclass(tp):
        return value
    if tp is str and value is not None and not isinstance(value, str):
        value = item.partition("=")[2].strip()
    _coerce(value, hint, key, f"--set {item}")
    return value


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` → X, so a section that may be unset is still walked."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """Instantiate dataclass `cls` from `raw`, checking keys and types recursively."""
    where = prefix.rstrip(".") or "the top level"
    raw = {} if raw is None else raw  # a section whose keys are all commented out means "defaults"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{hint}; valid keys in {where}: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against type `tp`; allow int → float and numeric strings → float."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        # YAML reads `1: World` with an int key; raw label values are compared as strings.
        return {str(k): _coerce(v, typing.get_args(tp)[1], f"{key}.{k}", source) for k, v in value.items()}
    if origin is Annotated:  # a registered name
        base, *marks = typing.get_args(tp)
        value = _coerce(value, base, key, source)
        for mark in marks:
            mark.check(value, key, source)
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value is False and "no" in choices:  # YAML 1.1 reads a bare `no` (`mixed_precision: no`) as False
            value = "no"
        if value not in choices:
            raise ConfigError(f"{source}: '{key}' is {value!r}; valid choices: {', '.join(repr(c) for c in choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{key}.", source)
    if tp is float and isinstance(value, str):
        try:  # PyYAML reads `1e-3` (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")


def _check_lora(cfg: RunConfig) -> None:
    lora = cfg.model.lora
    if lora is None:
        return
    if not cfg.model.init_from:
        raise ConfigError("'model.lora' adapts a pretrained model: set 'model.init_from' (or remove 'model.lora')")
    if cfg.objective.name not in ("cls", "seq2seq", "instruct"):
        raise ConfigError(f"'model.lora' fine-tunes (objective cls, seq2seq or instruct), not '{cfg.objective.name}'")
    if lora.r < 1 or not lora.alpha > 0 or not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"'model.lora' needs r >= 1, alpha > 0 and dropout in [0, 1); got {lora}")
    if lora.target_modules is not None and not lora.target_modules:
        raise ConfigError("'model.lora.target_modules' is empty; name modules, or unset it for the defaults")


def _check_values(cfg: RunConfig) -> None:
    """Range checks that types alone cannot express."""
    _check_positive(cfg)
    _check_ranges(cfg)
    _check_mixture(cfg)
    _check_combinations(cfg)
    _check_architecture(cfg.model)
    _check_lora(cfg)


def _check_positive(cfg: RunConfig) -> None:
    positive = {
        "data.block_size": cfg.data.block_size,
        "tokenizer.vocab_size": cfg.tokenizer.vocab_size,
        "model.hidden_size": cfg.model.hidden_size,
        "model.num_layers": cfg.model.num_layers,
        "model.num_heads": cfg.model.num_heads,
        "train.max_steps": cfg.train.max_steps,
        "train.per_device_train_batch_size": cfg.train.per_device_train_batch_size,
        "train.per_device_eval_batch_size": cfg.train.per_device_eval_batch_size,
        "train.gradient_accumulation_steps": cfg.train.gradient_accumulation_steps,
        "train.logging_steps": cfg.train.logging_steps,
        "train.eval_steps": cfg.train.eval_steps,
        "train.save_steps": cfg.train.save_steps,
        "train.save_total_limit": cfg.train.save_total_limit,
        "optim.learning_rate": cfg.optim.learning_rate,
    }
    positive |= {  # optional: None means "not limited"
        "data.max_documents": cfg.data.max_documents,
        "data.max_train_examples": cfg.data.max_train_examples,
        "train.eval_max_batches": cfg.train.eval_max_batches,
        "model.intermediate_size": cfg.model.intermediate_size,
        "tokenizer.max_training_documents": cfg.tokenizer.max_training_documents,
        "train.early_stopping_patience": cfg.train.early_stopping_patience,
        "train.max_runtime": cfg.train.max_runtime,
        "model.num_decoder_layers": cfg.model.num_decoder_layers,
        "model.embedding_size": cfg.model.embedding_size,
        "optim.query_lr_scale": cfg.optim.query_lr_scale,
        "optim.embedding_lr_scale": cfg.optim.embedding_lr_scale,
    }
    positive |= {
        "tokenizer.num_sentinels": cfg.tokenizer.num_sentinels,
        "model.num_filters": cfg.model.num_filters,
        "objective.max_target_length": cfg.objective.max_target_length,
        "objective.num_beams": cfg.objective.num_beams,
        "objective.no_repeat_ngram_size": cfg.objective.no_repeat_ngram_size,
        "objective.max_new_tokens": cfg.objective.max_new_tokens,
        "objective.mean_span_length": cfg.objective.mean_span_length,
    }
    positive |= {f"model.kernel_sizes[{i}]": k for i, k in enumerate(cfg.model.kernel_sizes)}
    positive |= {f"data.mixture[{i}].rate": m.rate for i, m in enumerate(cfg.data.mixture or [])}
    for key, value in positive.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"'{key}' must be positive, got {value}")


def _check_ranges(cfg: RunConfig) -> None:
    if not 0.0 <= cfg.optim.muon_momentum < 1.0:
        raise ConfigError(f"'optim.muon_momentum' must be in [0, 1), got {cfg.optim.muon_momentum}")
    if not 0.0 < cfg.optim.decay_fraction <= 1.0:
        raise ConfigError(f"'optim.decay_fraction' must be in (0, 1], got {cfg.optim.decay_fraction}")
    wsd = cfg.optim.lr_scheduler_type == "warmup_stable_decay"
    if wsd and cfg.train.max_runtime is not None and cfg.optim.decay_fraction == 1.0:
        # The decay's length comes from the steps per second of the stable phase before it.
        raise ConfigError(
            "'optim.decay_fraction' must be below 1 with 'train.max_runtime': a time-budgeted "
            "warmup-stable-decay run times its stable phase to plan the decay"
        )
    if cfg.optim.warmup_steps < 0:
        raise ConfigError(f"'optim.warmup_steps' must be >= 0, got {cfg.optim.warmup_steps}")
    for key in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(cfg.optim, key) < 1.0:
            raise ConfigError(f"'optim.{key}' must be in [0, 1), got {getattr(cfg.optim, key)}")
    if not 0.0 <= cfg.data.validation_fraction < 1.0:
        raise ConfigError(f"'data.validation_fraction' must be in [0, 1), got {cfg.data.validation_fraction}")
    if not 0.0 < cfg.objective.mlm_probability < 1.0:
        raise ConfigError(f"'objective.mlm_probability' must be in (0, 1), got {cfg.objective.mlm_probability}")
    if not 0.0 < cfg.objective.noise_density < 1.0:
        raise ConfigError(f"'objective.noise_density' must be in (0, 1), got {cfg.objective.noise_density}")
    if not 0.0 <= cfg.objective.label_smoothing < 1.0:
        raise ConfigError(f"'objective.label_smoothing' must be in [0, 1), got {cfg.objective.label_smoothing}")
    if cfg.objective.mean_span_length < 1:
        raise ConfigError(f"'objective.mean_span_length' must be at least 1, got {cfg.objective.mean_span_length}")
    for name in ("dropout", "residual_dropout"):
        if not 0.0 <= (value := getattr(cfg.model, name)) < 1.0:
            raise ConfigError(f"'model.{name}' must be in [0, 1), got {value}")


def _check_mixture(cfg: RunConfig) -> None:
    if cfg.data.mixture is None:
        return
    if not cfg.data.mixture:
        raise ConfigError("'data.mixture' is empty; list at least one source or remove it")
    if cfg.objective.name not in ("seq2seq", "instruct"):
        raise ConfigError(f"'data.mixture' needs a text-to-text objective (seq2seq, instruct), not "
                          f"'{cfg.objective.name}'")  # fmt: skip
    for i, source in enumerate(cfg.data.mixture):
        if source.data.mixture is not None:
            raise ConfigError(f"'data.mixture[{i}].data.mixture': mixtures do not nest")
        if source.data.streaming or source.data.prepared_path or source.data.shift_blocks:
            raise ConfigError(f"'data.mixture[{i}]': mixture sources are read into memory as examples (no "
                              "streaming, prepared_path or shift_blocks)")  # fmt: skip
        if source.kind == "span_corruption" and cfg.objective.name != "seq2seq":
            raise ConfigError(f"'data.mixture[{i}]': span corruption trains encoder-decoders (objective seq2seq)")
        if source.data.source in ("files", "parallel", "hub") and not source.data.path:
            raise ConfigError(f"'data.mixture[{i}].data.path' is required for source '{source.data.source}'")


def _check_architecture(model: ModelConfig) -> None:
    """The fields of the architecture built from scratch (with `init_from`, the export's own config decides); each
    architecture's registry entry checks its own."""
    if model.init_from:
        return
    models = importlib.import_module("pipelines.models").MODELS
    spec = models.get(model.arch)
    if spec.check is not None:
        spec.check(model)
    if model.residual_dropout and not spec.residual_dropout:
        takers = " and ".join(name for name in models.names() if models.get(name).residual_dropout)
        raise ConfigError(f"'model.residual_dropout' is for {takers}; '{model.arch}' drops its residual paths "
                          "with 'model.dropout'")  # fmt: skip
    if model.attention != "general" and model.arch != "lstm_seq2seq":
        raise ConfigError(f"'model.attention' is for lstm_seq2seq, not '{model.arch}'")


def _check_combinations(cfg: RunConfig) -> None:
    """Fields that are valid alone but not together."""
    if cfg.data.max_train_examples is not None and cfg.objective.name != "cls":
        raise ConfigError("'data.max_train_examples' subsets labelled classification data (objective.name: cls)")
    if cfg.data.mixture is None and cfg.data.source in ("files", "parallel", "hub") and not cfg.data.path:
        raise ConfigError(f"'data.path' is required when 'data.source' is '{cfg.data.source}'")
    if cfg.data.shift_blocks and cfg.data.streaming:
        raise ConfigError("'data.shift_blocks' cuts a text held in memory or in token files; streaming data is "
                          "packed as it is read")  # fmt: skip
    if cfg.train.group_by_length and cfg.data.streaming:
        raise ConfigError("'train.group_by_length' sorts the whole training set; streaming data is read in order")
    if cfg.model.embeddings_from and cfg.model.init_from:
        raise ConfigError(
            "'model.embeddings_from' seeds a model built from scratch; it cannot go with 'model.init_from'"
        )
    if cfg.objective.name == "instruct" and cfg.objective.max_target_length >= cfg.data.block_size:
        raise ConfigError(
            f"'objective.max_target_length' ({cfg.objective.max_target_length}) must be shorter than "
            f"'data.block_size' ({cfg.data.block_size}): prompt and response share one sequence in a causal LM"
        )
    mpe = cfg.model.max_position_embeddings
    if mpe is not None and mpe < cfg.data.block_size:
        raise ConfigError(
            f"'model.max_position_embeddings' ({mpe}) is shorter than 'data.block_size' ({cfg.data.block_size})"
        )
