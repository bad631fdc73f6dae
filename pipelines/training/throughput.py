"""Throughput accounting: training FLOPs per token, model FLOPs utilisation, peak memory."""

from __future__ import annotations

import copy
import resource
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16/fp16 tensor-core peaks (FLOP/s) by device name fragment; MFU is reported against these.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def measured_flops_per_token(model: nn.Module, batch: dict) -> float | None:
    """Training FLOPs per input token, counted by `torch.utils.flop_counter` on one forward and backward pass of
    the batch's first example through a copy of the model: every matmul and attention product, encoder and
    decoder alike, whatever the architecture. The run's weights, gradients and random state are untouched. The
    model's own forward, eagerly: a run's wrappers (autocast, the compiled training forward) change no FLOP count,
    and compiling the copy would cost seconds.
    Per input token (`input_ids` positions, padding included) because that is what the loop counts as tokens.
    None when the model cannot be copied or run alone (e.g. sharded weights)."""
    example = {k: v[:1] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    device = example["input_ids"].device
    rng_devices = [device] if device.type == "cuda" else []  # dropout in the copy must not move the run's RNG
    try:
        twin = copy.deepcopy(model)
        twin.train()
        with torch.random.fork_rng(devices=rng_devices), FlopCounterMode(display=False) as counter:
            type(twin).forward(twin, **example).loss.backward()
    except Exception:  # noqa: BLE001 - any failure only means the analytic estimate is used instead
        return None
    return counter.get_total_flops() / example["input_ids"].numel()


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Analytic estimate for a decoder-only transformer, kept as a cross-check and fallback: 6·N for the matrix
    multiplies (forward and backward) plus 12·L·d·T for attention scores and values (PaLM, appendix B).

    N counts every parameter that takes part in a matrix multiply: embedding lookups (token, position,
    segment tables) are free, but a token table tied to the output projection is one (V·d per token).
    """
    total = sum(p.numel() for p in model.parameters())
    tables = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}  # shared ones once
    lookups = sum(w.numel() for w in tables.values())
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
