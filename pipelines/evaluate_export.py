"""`evaluate`: score an exported run on a data set it was not trained on, with its own run kind's evaluator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from torch.utils.data import DataLoader

from pipelines.config import RunConfig
from pipelines.errors import PipelineError
from pipelines.models import resolve_export
from pipelines.objectives import OBJECTIVES
from pipelines.tasks import build_task
from pipelines.training.loop import build_accelerator


def evaluate_export(cfg: RunConfig, run: str | Path, output: Path, data_path: str | None = None) -> dict:
    """Metrics of the export in `run` on `data_path` (all of it), or on the config's validation split,
    written as JSON to `output` by the main process."""
    export = resolve_export(run)
    objective = OBJECTIVES.get(cfg.objective.name)
    text_to_text, classifier = objective.kind == "text_to_text", objective.kind == "labelled"
    if text_to_text and data_path is not None and cfg.data.mixture is not None:
        raise PipelineError("--data scores one file with one template; this run's config is a mixture")
    if text_to_text:  # the generated outputs go next to the JSON, never over the run's own predictions
        cfg = dataclasses.replace(cfg, output_dir=str(output.with_suffix("")))
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    data = cfg.data
    if data_path is not None:  # the file is both splits: nothing is carved off, every example is scored
        data = dataclasses.replace(
            data, source="files", path=data_path, validation_path=data_path, prepared_path=None, streaming=False
        )
    # Only the validation split is scored: one training document spares the task builder tokenising the rest.
    data = dataclasses.replace(data, max_documents=1, max_train_examples=None)
    if classifier and data.labels is None:
        config = json.loads((export / "config.json").read_text())
        labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        data = dataclasses.replace(data, labels=labels)  # the classifier's own label order
    cfg = dataclasses.replace(
        cfg,
        data=data,
        model=dataclasses.replace(cfg.model, init_from=str(export), lora=None),  # a LoRA export is merged already
        # Uncompiled, as training evaluates: one pass over the data would not repay a compile.
        train=dataclasses.replace(
            cfg.train, eval_max_batches=None, report_to="none", mixed_precision=None, torch_compile=False
        ),
    )
    accelerator = build_accelerator(cfg.train, cfg.output_dir, cfg.seed)
    task = build_task(cfg, accelerator)
    if task.eval_dataset is None:
        raise PipelineError("the run's data has no validation split; pass --data FILE to score a file")
    batch_size = cfg.train.per_device_eval_batch_size
    loader = DataLoader(task.eval_dataset, batch_size=batch_size, collate_fn=task.eval_collator)
    model, loader = accelerator.prepare(task.model, loader)
    results = {"export": str(export), "data": data.validation_path or data.path or data.source,
               **task.evaluate(model, loader)}  # fmt: skip
    if accelerator.is_main_process:
        output.write_text(json.dumps(results, indent=2))
    accelerator.end_training()
    return results
