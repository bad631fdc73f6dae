"""Classification evaluation: loss and task metrics through offline `evaluate` modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.errors import PipelineError

LOCAL_METRICS = Path(__file__).parent / "metrics"
AVERAGES = ("binary", "macro", "micro", "weighted")


@dataclass(frozen=True)
class MetricSpec:
    """A configured metric name such as `f1_macro`: the `evaluate` module and its compute arguments."""

    name: str
    module: str
    kwargs: dict


def parse_metric(name: str) -> MetricSpec:
    """`f1` → binary F1; `f1_macro` → F1 with average="macro"; other names pass through unchanged."""
    base, _, average = name.rpartition("_")
    if base in ("f1", "precision", "recall") and average in AVERAGES:
        return MetricSpec(name, base, {"average": average})
    return MetricSpec(name, name, {})


def load_metric(module: str):
    """A bundled offline module when there is one, else a hub metric (needs the network the first time)."""
    import evaluate

    local = LOCAL_METRICS / module
    try:
        return evaluate.load(str(local) if local.is_dir() else module)
    except Exception as err:  # evaluate raises FileNotFoundError, ConnectionError, ... for unknown names
        bundled = ", ".join(sorted(p.name for p in LOCAL_METRICS.iterdir() if p.is_dir()))
        raise PipelineError(
            f"cannot load metric '{module}' (bundled offline: {bundled}): {str(err).splitlines()[0]}"
        ) from None


def load_metrics(names: list[str]) -> list[tuple[MetricSpec, object]]:
    """Every configured metric, loaded up front so a bad name fails before training."""
    specs = [parse_metric(name) for name in names]
    return [(spec, load_metric(spec.module)) for spec in specs]


@torch.no_grad()
def evaluate_classification(
    model, loader, accelerator, metrics, num_labels: int, max_batches: int | None = None
) -> dict[str, float]:
    """Mean cross-entropy per example plus each metric, on predictions gathered from every process."""
    was_training = model.training
    model.eval()
    losses, predictions, references = [], [], []
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        labels = batch.pop("labels")
        logits = model(**batch).logits  # (B, num_labels)
        loss = F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)
        gathered = accelerator.gather_for_metrics((loss, logits.argmax(dim=-1), labels))
        for store, tensor in zip((losses, predictions, references), gathered, strict=True):
            store.append(tensor.cpu())
    model.train(was_training)
    predictions, references = torch.cat(predictions).tolist(), torch.cat(references).tolist()
    results = {"loss": torch.cat(losses).mean().item(), "examples": len(references)}
    for spec, metric in metrics:
        kwargs = spec.kwargs
        if spec.module in ("f1", "precision", "recall") and not kwargs and num_labels > 2:
            kwargs = {"average": "macro"}  # binary averaging is undefined for more than two classes
        value = metric.compute(predictions=predictions, references=references, **kwargs)[spec.module]
        results[spec.name] = float(value)
    return results
