"""Encoder-decoder objectives: T5 span corruption on raw text, and text-to-text (input → target) pairs.

Span corruption (Raffel et al. 2020, §3.1.4): a fraction `noise_density` of each raw block is cut into
spans of mean length `mean_span_length`; the input keeps the other tokens with one sentinel per span,
the target lists each sentinel followed by the tokens it replaced. Both end with EOS. The raw block
length is chosen so that every full block's input is exactly `data.block_size` tokens long.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.config import RunConfig
from pipelines.errors import PipelineError
from pipelines.objectives import OBJECTIVES, Objective, Packing
from pipelines.objectives.batching import target_texts


def span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a raw sequence of `length` tokens; at least one of each kept and cut."""
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = min(max(round(noise / mean_span_length), 1), noise, length - noise)
    return noise, spans


def corrupted_lengths(raw_length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(input length, target length) after corrupting `raw_length` tokens, each with its sentinels and EOS."""
    noise, spans = span_counts(raw_length, noise_density, mean_span_length)
    return raw_length - noise + spans + 1, noise + spans + 1


def raw_length_for(input_length: int, noise_density: float, mean_span_length: float) -> int:
    """The longest raw block whose corrupted input fits in `input_length` tokens (T5's
    `compute_input_and_target_lengths`); with the usual settings the fit is exact."""
    raw = 2
    while corrupted_lengths(raw + 1, noise_density, mean_span_length)[0] <= input_length:
        raw += 1
    if corrupted_lengths(raw, noise_density, mean_span_length)[0] > input_length:
        raise PipelineError(f"data.block_size ({input_length}) is too short for span corruption")
    return raw


def random_spans_mask(length: int, noise_density: float, mean_span_length: float, generator=None) -> torch.Tensor:
    """A (length,) bool mask, True on noise: alternating kept/noise runs, each run at least one token long,
    starting with a kept run; span and run lengths are a uniformly random composition of the counts."""
    noise, spans = span_counts(length, noise_density, mean_span_length)

    def composition(total: int, parts: int) -> torch.Tensor:
        cuts = torch.randperm(total - 1, generator=generator)[: parts - 1].sort().values + 1
        edges = torch.cat([torch.tensor([0]), cuts, torch.tensor([total])])
        return edges.diff()

    runs = torch.stack([composition(length - noise, spans), composition(noise, spans)], dim=1).flatten()
    is_noise = torch.arange(2 * spans) % 2 == 1
    return is_noise.repeat_interleave(runs)


def corrupt(tokens: torch.Tensor, mask: torch.Tensor, sentinel_ids: torch.Tensor, eos_id: int):
    """(input ids, target ids) for one raw block: each noise span becomes the next sentinel in the input,
    and the target is `sentinel_0 span_0 sentinel_1 span_1 … </s>`."""
    starts = mask & ~torch.cat([torch.tensor([False]), mask[:-1]])  # (T,) first token of each noise span
    sentinel_at = sentinel_ids[(starts.cumsum(0) - 1).clamp(min=0)]  # (T,) the sentinel of each token's span
    inputs = torch.where(starts, sentinel_at, tokens)[~mask | starts]
    # Per noise token the pair (its span's sentinel, the token); the sentinel is kept only at a span start.
    pairs = torch.stack([sentinel_at[mask], tokens[mask]], dim=1).flatten()
    keep = torch.stack([starts[mask], torch.ones_like(starts[mask])], dim=1).flatten()
    target = pairs[keep]
    eos = torch.tensor([eos_id])
    return torch.cat([inputs, eos]), torch.cat([target, eos])


@dataclass(frozen=True)
class Seq2SeqCollator:
    """Encoder inputs and decoder labels, padded per batch.

    An example with `labels` is a text-to-text pair and passes through; one without (or with empty
    labels) is a raw block and is span-corrupted here, so a mixture can put both in one batch. With
    `eval_seed`, a block's corruption is a function of its tokens: every evaluation scores the same targets.
    """

    pad_token_id: int
    eos_token_id: int
    sentinel_ids: torch.Tensor | None
    noise_density: float
    mean_span_length: float
    eval_seed: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pairs = [self._pair(e) for e in examples]
        inputs = _pad([p[0] for p in pairs], self.pad_token_id)
        labels = _pad([p[1] for p in pairs], -100)
        batch = {"input_ids": inputs, "attention_mask": (inputs != self.pad_token_id).long(), "labels": labels}
        return batch | target_texts(examples)

    def _pair(self, example: dict) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.as_tensor(example["input_ids"])
        if example.get("labels"):
            return tokens, torch.as_tensor(example["labels"])
        if self.sentinel_ids is None:
            raise PipelineError("span corruption needs sentinel tokens <extra_id_0>...: train a `unigram` tokenizer")
        eos = torch.tensor([self.eos_token_id])
        if len(tokens) < 2:  # a one-token tail block has nothing to keep beside a span: not corrupted
            return torch.cat([tokens, eos]), eos
        generator = None
        if self.eval_seed is not None:
            generator = torch.Generator().manual_seed(self.eval_seed + int(tokens.sum()) % 1_000_003)
        mask = random_spans_mask(len(tokens), self.noise_density, self.mean_span_length, generator)
        spans = int((mask & ~torch.cat([torch.tensor([False]), mask[:-1]])).sum())
        if spans > len(self.sentinel_ids):
            raise PipelineError(f"a block needs {spans} sentinels but the tokenizer has {len(self.sentinel_ids)}")
        return corrupt(tokens, mask, self.sentinel_ids, self.eos_token_id)


def _pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value).long()


def sentinel_ids(tokenizer) -> torch.Tensor | None:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, … in order (None when the tokenizer has none)."""
    vocab = tokenizer.get_vocab()
    ids = []
    while f"<extra_id_{len(ids)}>" in vocab:
        ids.append(vocab[f"<extra_id_{len(ids)}>"])
    return torch.tensor(ids) if ids else None


def build_seq2seq_collator(tokenizer, cfg, eval_seed: int | None = None) -> Seq2SeqCollator:
    """A collator for the tokenizer's pad/EOS ids and sentinels, with the config's corruption settings."""
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise PipelineError("an encoder-decoder needs a tokenizer with pad and EOS tokens (train a `unigram` one)")
    return Seq2SeqCollator(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        sentinel_ids=sentinel_ids(tokenizer),
        noise_density=cfg.noise_density,
        mean_span_length=cfg.mean_span_length,
        eval_seed=eval_seed,
    )


def span_packing(tokenizer, cfg: RunConfig) -> Packing:
    """EOS between documents; raw blocks sized so that the corrupted input is exactly `data.block_size`."""
    ids = sentinel_ids(tokenizer)
    if ids is None:
        raise PipelineError("span corruption needs sentinel tokens <extra_id_0>...: train a `unigram` tokenizer")
    objective = cfg.objective
    raw = raw_length_for(cfg.data.block_size, objective.noise_density, objective.mean_span_length)
    spans = span_counts(raw, objective.noise_density, objective.mean_span_length)[1]
    if spans > len(ids):
        raise PipelineError(
            f"a block of {cfg.data.block_size} tokens needs {spans} sentinels but the tokenizer has {len(ids)}; "
            "lower data.block_size or raise objective.mean_span_length"
        )
    return Packing(separator_id=tokenizer.eos_token_id, block_size=raw)


def encode_seq2seq(sources: list[str], targets: list[str], tokenizer, max_input_length: int,
                   max_target_length: int) -> dict[str, list]:  # fmt: skip
    """Encoder inputs and decoder labels, each ending in EOS (the tokenizer adds it); overlong ones are cut
    and keep their EOS."""
    inputs = tokenizer(sources)["input_ids"]
    labels = tokenizer(targets)["input_ids"]
    return {
        "input_ids": [_cut(ids, max_input_length) for ids in inputs],
        "labels": [_cut(ids, max_target_length) for ids in labels],
        "input_truncated": [len(ids) > max_input_length for ids in inputs],
        "target_truncated": [len(ids) > max_target_length for ids in labels],
    }


def _cut(ids: list[int], length: int) -> list[int]:
    return ids if len(ids) <= length else ids[: length - 1] + ids[-1:]


OBJECTIVES.register(
    "seq2seq",
    Objective(
        kind="text_to_text",
        families=("seq2seq",),
        auto_class="AutoModelForSeq2SeqLM",
        build_collator=build_seq2seq_collator,
        encode_pairs=encode_seq2seq,
        default_metrics=("rouge", "exact_match"),
    ),
)
OBJECTIVES.register(
    "span",
    Objective(
        kind="packed",
        families=("seq2seq",),
        auto_class="AutoModelForSeq2SeqLM",
        build_collator=build_seq2seq_collator,
        packing=span_packing,
    ),
)
