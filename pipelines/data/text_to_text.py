"""Text-to-text data: records → (input, target) strings through templates → token ids, for one source or a
mixture of sources sampled by rate (span-corruption sources contribute raw blocks that the collator corrupts).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, replace

from datasets import Dataset, Features, Sequence, Value, concatenate_datasets, interleave_datasets

from pipelines.config import DataConfig, MixtureSource, RunConfig
from pipelines.data.prepare import prepare_lm_data
from pipelines.data.sources import load_raw_datasets
from pipelines.errors import PipelineError

FEATURES = Features({"input_ids": Sequence(Value("int64")), "labels": Sequence(Value("int64"))})
# Validation keeps each target's text: generated outputs are scored against it, not against decoded
# (cut, tokenizer-normalised) label ids.
VALIDATION_FEATURES = Features({**FEATURES, "target_text": Value("string")})


def template_fields(template: str) -> list[str]:
    """The record fields a format string names, in order (`"{instruction}\\n{input}"` → instruction, input)."""
    try:
        return list(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name))
    except ValueError as err:
        raise PipelineError(f"bad template {template!r}: {err}") from None


def fill_template(template: str, values: dict) -> str:
    """`template` with each `{field}` replaced by its value. Unlike `str.format`, a dotted field (`{body.text}`) is
    the name of a flattened nested column, not an attribute lookup."""
    parts = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = values[name]
            value = {"r": repr, "s": str, "a": ascii}[conversion](value) if conversion else value
            parts.append(format(value, spec or ""))
    return "".join(parts)


def render(record_batch: dict[str, list], template: str, required: bool) -> tuple[list[str], list[bool]]:
    """The template filled in for every record, and whether a field was missing (None or blank).

    Optional fields (the input side) render as empty text; the result is stripped, so
    `"{instruction}\\n{input}"` with no input is just the instruction.
    """
    fields = template_fields(template)
    size = len(next(iter(record_batch.values())))
    texts, missing = [], []
    for i in range(size):
        values = {f: record_batch[f][i] for f in fields}
        blank = [f for f, v in values.items() if v is None or not str(v).strip()]
        texts.append(fill_template(template, {f: "" if v is None else v for f, v in values.items()}).strip())
        missing.append(bool(blank) and required)
    return texts, missing


def templated_text(batch: dict[str, list], input_template: str, target_template: str) -> dict[str, list[str]]:
    """Each record's input and target on two lines: the text a tokenizer for this task should learn from."""
    sources, targets = render(batch, input_template, False)[0], render(batch, target_template, False)[0]
    return {"text": [f"{s}\n{t}" for s, t in zip(sources, targets, strict=True)]}


def encode_records(batch: dict[str, list], tokenizer, input_template: str, target_template: str, encode: Callable,
                   max_input_length: int, max_target_length: int) -> dict[str, list]:  # fmt: skip
    """Template and tokenize a batch of records; `encode` is the objective's (seq2seq or prompt + response)."""
    sources, _ = render(batch, input_template, required=False)
    targets, missing = render(batch, target_template, required=True)
    encoded = encode(sources, targets, tokenizer, max_input_length, max_target_length)
    return encoded | {"missing_target": missing, "target_text": targets}


@dataclass(frozen=True)
class TextToTextData:
    """Encoded training and validation examples, what was truncated, and the templates (for the export)."""

    train: Dataset
    validation: Dataset | None
    counts: dict[str, int]
    templates: dict[str, str]


def prepare_text_to_text_data(cfg: RunConfig, tokenizer, encode: Callable, span_packing=None) -> TextToTextData:
    """Every configured source encoded; several are interleaved by rate for training ("all exhausted": an epoch
    shows every example of every source at least once, the smaller ones repeated to honour the rates).

    Validation is the text-to-text sources' validation sets together; span-corruption sources train only.
    """
    sources = cfg.data.mixture or [_single_source(cfg.data)]
    trains, validations, counts, templates, rates = [], [], {}, {}, []
    for source in sources:
        name = source.name or source.data.path or source.data.source
        if source.kind == "span_corruption":
            if span_packing is None:
                raise PipelineError(f"mixture source '{name}': span corruption needs an encoder-decoder (`seq2seq`)")
            blocks = prepare_lm_data(replace(source.data, block_size=cfg.data.block_size), cfg.seed, tokenizer,
                                     span_packing).blocks["train"]  # fmt: skip
            trains.append(blocks.map(lambda b: {"labels": [[] for _ in b["input_ids"]]}, batched=True,
                                     features=FEATURES, desc=f"{name}: raw blocks"))  # fmt: skip
        else:
            splits = _encode_source(cfg, source.data, name, tokenizer, encode, counts)
            templates[name] = source.data.input_template
            trains.append(splits["train"])
            if "validation" in splits:
                validations.append(splits["validation"])
        rates.append(source.rate)
    if not templates:
        raise PipelineError("a text-to-text run needs at least one text_to_text source to validate on")
    train = trains[0]
    if len(trains) > 1:
        total = sum(rates)
        train = interleave_datasets(trains, probabilities=[r / total for r in rates], seed=cfg.seed,
                                    stopping_strategy="all_exhausted")  # fmt: skip
    validation = concatenate_datasets(validations) if validations else None
    return TextToTextData(train=train, validation=validation, counts=counts, templates=templates)


def _single_source(data: DataConfig) -> MixtureSource:
    return MixtureSource(name=None, data=data)


def _encode_source(cfg: RunConfig, data: DataConfig, name: str, tokenizer, encode: Callable, counts: dict) -> dict:
    if not data.input_template or not data.target_template:
        where = "data" if cfg.data.mixture is None else f"mixture source '{name}'"
        raise PipelineError(f"{where}: text-to-text data needs input_template and target_template")
    # A template naming a field the records lack fails here, naming the field and the columns there are.
    columns = {f"data.{side}_template field '{f}'": f for side in ("input", "target")
               for f in template_fields(getattr(data, f"{side}_template"))}  # fmt: skip
    raw = load_raw_datasets(data, cfg.seed, columns)
    encoded = raw.map(
        encode_records,
        batched=True,
        num_proc=data.num_proc,
        remove_columns=raw["train"].column_names,
        fn_kwargs={
            "tokenizer": tokenizer,
            "input_template": data.input_template,
            "target_template": data.target_template,
            "encode": encode,
            "max_input_length": cfg.data.block_size,
            "max_target_length": cfg.objective.max_target_length,
        },  # fmt: skip
        desc=f"{name}: tokenizing",
    )
    splits = {}
    for split_name, split in encoded.items():
        flags = split.select_columns(["missing_target"]).to_dict()["missing_target"]
        missing = sum(flags)
        if missing and data.empty_targets == "refuse":
            raise PipelineError(
                f"{name}: {missing} of {len(split)} {split_name} records have an empty field in target_template "
                f"{data.target_template!r} (the first is record {flags.index(True)}); fill them, or set "
                "data.empty_targets=drop"
            )
        if missing:
            split = split.filter(lambda empty: not empty, input_columns="missing_target", desc=f"{name}: dropping")
        cut_inputs, cut_targets = (sum(split[column]) for column in ("input_truncated", "target_truncated"))
        if (cut_inputs or cut_targets) and cfg.objective.overlong == "refuse":
            raise PipelineError(
                f"{name}: {cut_inputs} {split_name} inputs are longer than data.block_size ({cfg.data.block_size}) "
                f"and {cut_targets} targets longer than objective.max_target_length "
                f"({cfg.objective.max_target_length}); raise them or set objective.overlong=truncate"
            )
        counts[f"{name}/{split_name}/examples"] = len(split)
        counts[f"{name}/{split_name}/dropped_empty_targets"] = missing
        counts[f"{name}/{split_name}/truncated_inputs"] = cut_inputs
        counts[f"{name}/{split_name}/truncated_targets"] = cut_targets
        features = FEATURES if split_name == "train" else VALIDATION_FEATURES
        splits[split_name] = split.select_columns(list(features)).cast(features)
    return splits
