"""Text-to-text evaluation: teacher-forced loss and token accuracy, then generated outputs scored against the
targets (ROUGE, BLEU, chrF, exact match through offline `evaluate` modules) and written to a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate.utils import DistributedType

from pipelines.errors import PipelineError
from pipelines.evaluation.classification import load_metric
from pipelines.evaluation.lm import evaluate_lm
from pipelines.models import new_token_limit

# Configured name → (evaluate module, result key reported under the name; None: every float result).
GENERATION_METRICS = {
    "rouge": ("rouge", None),
    "bleu": ("sacrebleu", "score"),
    "chrf": ("chrf", "score"),
    "exact_match": ("exact_match", "exact_match"),
}


def load_generation_metrics(names: list[str]) -> list[tuple[str, str | None, object]]:
    """(name, result key, module) for each configured metric, loaded up front so a bad name fails early."""
    unknown = [n for n in names if n not in GENERATION_METRICS]
    if unknown:
        raise PipelineError(
            f"unknown text-to-text metric(s) {', '.join(unknown)}; choose from {', '.join(GENERATION_METRICS)}"
        )
    return [(n, GENERATION_METRICS[n][1], load_metric(GENERATION_METRICS[n][0])) for n in names]


def score(metrics, predictions: list[str], references: list[str]) -> dict[str, float]:
    """Every metric's figures; metrics on 0-100 scales (BLEU, chrF) stay on them, as sacrebleu reports."""
    results = {}
    for name, key, metric in metrics:
        values = metric.compute(predictions=predictions, references=references)
        if key is None:
            results |= {k: float(v) for k, v in values.items() if isinstance(v, float)}
        else:
            results[name] = float(values[key])
    return results


def prompts_of(batch: dict[str, torch.Tensor], decoder_only: bool, pad_id: int) -> dict[str, torch.Tensor]:
    """What the model generates from: the encoder inputs, or (causal LM) each prompt, left-padded so that
    every row's last prompt token sits at the same position."""
    if not decoder_only:
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    answered = batch["labels"] != -100
    lengths = torch.where(answered.any(dim=1), answered.int().argmax(dim=1), batch["attention_mask"].sum(dim=1))
    width = int(lengths.max())
    input_ids = torch.full((len(lengths), width), pad_id, dtype=batch["input_ids"].dtype, device=lengths.device)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths.tolist()):
        input_ids[row, width - length :] = batch["input_ids"][row, :length]
        attention_mask[row, width - length :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def shards_weights(accelerator) -> bool:
    """True when each process holds only part of the weights (FSDP, DeepSpeed ZeRO-3): every forward pass is then a
    collective, so all processes must run as many as the longest generation needs (`synced_gpus`). transformers
    detects this itself only for DeepSpeed and its own FSDP wrapping, not for accelerate's FSDP2."""
    if accelerator.num_processes == 1:
        return False
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin if accelerator.distributed_type == DistributedType.DEEPSPEED else None
    return plugin is not None and plugin.zero_stage == 3


@torch.no_grad()
def evaluate_text_to_text(
    model, loader, accelerator, tokenizer, metrics, decoder_only: bool, generation: dict,
    predictions_path: Path | None, max_batches: int | None,
) -> dict:  # fmt: skip
    """Loss, perplexity and token accuracy on the targets, plus generation metrics over the same batches.

    Each process generates for its shard; outputs are padded to one width and gathered, so the figures do
    not depend on the process count. `generation` holds the `generate` settings (beams, `max_new_tokens`, ...).
    The main process writes `{"input", "target", "prediction"}` lines.
    """
    results = evaluate_lm(model, loader, accelerator, shift_labels=decoder_only, max_batches=max_batches)
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    inputs, targets, predictions = [], [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        prompt = prompts_of(batch, decoder_only, pad)
        new_tokens = new_token_limit(unwrapped.config, prompt["input_ids"].shape[1], generation["max_new_tokens"])
        output = unwrapped.generate(**prompt, **(generation | {"max_new_tokens": new_tokens}), pad_token_id=pad,
                                    eos_token_id=tokenizer.eos_token_id,
                                    synced_gpus=shards_weights(accelerator))  # fmt: skip
        if decoder_only:
            output = output[:, prompt["input_ids"].shape[1] :]
        tensors = [accelerator.pad_across_processes(t, dim=1, pad_index=pad) for t in (prompt["input_ids"], output)]
        for store, tensor in zip((inputs, predictions), accelerator.gather_for_metrics(tuple(tensors)), strict=True):
            store += tokenizer.batch_decode(tensor, skip_special_tokens=True)
        targets += accelerator.gather_for_metrics(batch["target_text"])  # strings: gathered as objects
    unwrapped.train(was_training)
    results |= score(metrics, [p.strip() for p in predictions], [t.strip() for t in targets])
    if predictions_path is not None and accelerator.is_main_process:
        with open(predictions_path, "w") as f:
            for source, target, prediction in zip(inputs, targets, predictions, strict=True):
                f.write(json.dumps({"input": source, "target": target, "prediction": prediction.strip()}) + "\n")
    return results
