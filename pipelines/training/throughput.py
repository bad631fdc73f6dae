"""Throughput accounting: training FLOPs per token, model FLOPs utilisation, peak memory."""

from __future__ import annotations

import resource
import sys

import torch
from torch import nn

# Dense bf16/fp16 tensor-core peaks (FLOP/s) by device name fragment; MFU is reported against these.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: 6·N for the matrix multiplies (forward and backward) plus 12·L·d·T for
    attention scores and values (PaLM, appendix B).

    N counts every parameter that takes part in a matrix multiply: embedding lookups (token, position,
    segment tables) are free, but a token table tied to the output projection is one (V·d per token).
    """
    total = sum(p.numel() for p in model.parameters())
    lookups = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = output is not None and output.weight is model.get_input_embeddings().weight
    matmul = total - lookups + (output.weight.numel() if tied else 0)
    config = getattr(model, "config", None)
    layers, width = getattr(config, "num_hidden_layers", 0), getattr(config, "hidden_size", 0)
    return 6.0 * matmul + 12.0 * layers * width * seq_len


def peak_flops(device: torch.device, mixed_precision: str, configured: float | None) -> float | None:
    """The configured per-device peak, or a known GPU's bf16/fp16 peak; None when unknown (MFU not reported)."""
    if configured is not None:
        return configured
    if device.type != "cuda" or mixed_precision not in ("bf16", "fp16"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: allocated accelerator memory, or resident CPU memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
