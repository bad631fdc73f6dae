"""AdamW (or Muon with AdamW) with per-group learning rates and weight decay, built alike for every architecture."""

from __future__ import annotations

import functools
import math
import re

import torch
from transformers import get_scheduler

from pipelines.config import OptimConfig
from pipelines.errors import PipelineError
from pipelines.models import lr_scales


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Four groups: the matrices, the token embedding table (with a tied output layer), the attention query
    weights, and vectors (biases, norm gains). Vectors are never decayed; the table and the queries get their own
    learning-rate multipliers (`optim.embedding_lr_scale`, `optim.query_lr_scale`, else the architecture's)."""
    params = [p for p in model.parameters() if p.requires_grad]
    arch = lr_scales(model)
    if cfg.query_lr_scale is not None and not arch.queries:
        raise PipelineError(f"optim.query_lr_scale is set but {type(model).__name__} has no separate query weights")
    query_scale = arch.query if cfg.query_lr_scale is None else cfg.query_lr_scale
    embedding_scale = arch.embedding if cfg.embedding_lr_scale is None else cfg.embedding_lr_scale
    embedding = _token_embedding(model)
    queries = {id(p) for p in arch.queries}
    special = queries | {id(embedding)}
    hidden = {id(p) for name, p in model.named_parameters() if p.dim() == 2 and HIDDEN_MATRIX.search(name)}
    muon = hidden if cfg.muon else set()
    groups = [  # the plain matrices first: their rate is the one logged as `learning_rate`
        ([p for p in params if p.dim() >= 2 and id(p) not in special | muon], 1.0, cfg.weight_decay, False),
        ([p for p in params if p.dim() >= 2 and id(p) in muon - special], 1.0, cfg.weight_decay, True),
        ([p for p in params if p is embedding], embedding_scale, cfg.weight_decay, False),
        ([p for p in params if id(p) in queries], query_scale, cfg.weight_decay, cfg.muon),
        ([p for p in params if p.dim() < 2 and id(p) not in special], 1.0, 0.0, False),
    ]
    return [
        {"params": ps, "lr": cfg.learning_rate * scale, "weight_decay": decay, "muon": use_muon}
        for ps, scale, decay, use_muon in groups
        if ps
    ]


NORMUON_BETA2 = 0.95
"""`optim.name: normuon`: decay of the running mean square of each neuron's update (the paper's value)."""

HIDDEN_MATRIX = re.compile(r"\.(h|layers?|block)\.\d+\.")
"""Parameter names inside a numbered transformer block (GPT-2 `h.N`, Llama `layers.N`, BERT `layer.N`, T5 `block.N`):
the hidden matrices Muon is for."""


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over `param_groups` (with `optim.name: muon` or `normuon`, Muon over the groups marked for it); the
    schedule scales every group's learning rate alike."""
    groups = param_groups(model, cfg)
    adamw = torch.optim.AdamW([g for g in groups if not g["muon"]], lr=cfg.learning_rate, eps=cfg.adam_epsilon,
                              betas=(cfg.adam_beta1, cfg.adam_beta2), fused=cfg.fused)  # fmt: skip
    if not any(g["muon"] for g in groups):  # e.g. an LSTM or TextCNN: no block matrices
        return adamw
    # match_rms_adamw: Muon's orthogonal update is rescaled to AdamW's typical RMS, so the AdamW rate carries over.
    neuron_beta2 = NORMUON_BETA2 if cfg.name == "normuon" else None
    muon = Muon([g for g in groups if g["muon"]], lr=cfg.learning_rate, momentum=cfg.muon_momentum,
                adjust_lr_fn="match_rms_adamw", neuron_beta2=neuron_beta2)  # fmt: skip
    return MuonWithAdamW(muon, adamw)


class Muon(torch.optim.Muon):
    """`torch.optim.Muon` that orthogonalises its matrices in batches, one batched Newton-Schulz iteration per
    shape (a tall matrix joins the wide ones of its transposed shape, every parameter group together), in bfloat16
    only where the hardware computes bfloat16 natively (see `newton_schulz_dtype`); the update is otherwise
    torch's, with the same state. torch iterates matrix by matrix: on a small model most of that is per-operation
    overhead (a 3 x 128 Llama on 2 CPU cores: 193 ms per step matrix by matrix, 163 ms batched by shape and group,
    against AdamW's 149 ms; the benchmark's 21 matrices in two batches instead of four: 3.6 ms against 6.4).

    With `neuron_beta2`, NorMuon (Li et al., 2025, arXiv:2510.05491): each output neuron's (row's) share of the
    orthogonal update is evened out by a running mean of its squared size, then the whole update is scaled back to
    the orthogonal one's norm, so the learning rate means the same."""

    def __init__(self, params, *, neuron_beta2: float | None = None, **kwargs):
        super().__init__(params, **kwargs)
        self.neuron_beta2 = neuron_beta2

    @torch.no_grad()
    def step(self, closure=None):
        stepped = [(param, group) for group in self.param_groups for param in group["params"] if param.grad is not None]
        by_shape: dict[tuple, list] = {}  # a group's matrices of one shape are evened out and stepped together
        for (param, group), update in zip(stepped, self._orthogonal_updates(stepped), strict=True):
            by_shape.setdefault((id(group), param.shape), []).append((param, group, update))
        for same in by_shape.values():
            params, group = [param for param, _, _ in same], same[0][1]
            updates = torch.stack([update for _, _, update in same])
            if self.neuron_beta2 is not None:
                updates = self._even_out_neurons(params, updates)
            rate = group["lr"] * _muon_lr_ratio(group["adjust_lr_fn"], params[0].shape)
            for param, update in zip(params, updates, strict=True):
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-rate)

    def _orthogonal_updates(self, stepped: list[tuple[torch.nn.Parameter, dict]]) -> list[torch.Tensor]:
        """Each parameter's orthogonalised momentum, iterated in one batch per wide shape and iteration setting."""
        batches: dict[tuple, list[int]] = {}
        momenta = [self._momentum(param, group) for param, group in stepped]
        for i, (momentum, (_, group)) in enumerate(zip(momenta, stepped, strict=True)):
            if momentum.size(-2) > momentum.size(-1):
                momenta[i] = momentum.mT  # tall: iterate on the transpose, with the wide matrices of that shape
            settings = (group["ns_coefficients"], group["ns_steps"], group["eps"])
            batches.setdefault((momenta[i].shape, *settings), []).append(i)
        updates = [None] * len(stepped)
        for (_, *settings), members in batches.items():
            orthogonal = orthogonalise(torch.stack([momenta[i] for i in members]), *settings)
            for i, update in zip(members, orthogonal, strict=True):
                updates[i] = update if update.shape == stepped[i][0].shape else update.mT
        return updates

    def _even_out_neurons(self, params: list[torch.nn.Parameter], updates: torch.Tensor) -> torch.Tensor:
        """NorMuon's step: divide each row by the root of its running mean square, keep each matrix's norm."""
        for param in (p for p in params if "neuron_second_moment" not in self.state[p]):
            self.state[param]["neuron_second_moment"] = updates.new_zeros(param.size(0), 1)
        moments = torch.stack([self.state[param]["neuron_second_moment"] for param in params])
        moments.lerp_(updates.square().mean(-1, keepdim=True), 1 - self.neuron_beta2)
        for param, moment in zip(params, moments, strict=True):
            self.state[param]["neuron_second_moment"].copy_(moment)
        evened = updates / moments.sqrt().add_(1e-10)
        return evened * (updates.norm(dim=(-2, -1), keepdim=True) / evened.norm(dim=(-2, -1), keepdim=True).add_(1e-10))

    def _momentum(self, param: torch.nn.Parameter, group: dict) -> torch.Tensor:
        """The momentum buffer updated with this step's gradient; with Nesterov, the gradient pulled towards it."""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param.grad, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.lerp_(param.grad, 1 - group["momentum"])
        return param.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs and on CPUs with AVX512-BF16 or AMX, float32 on other CPUs.

    torch always iterates in bfloat16, which a CPU without bfloat16 instructions (AVX2) emulates about 30x slower
    than float32: one iteration on a 256 x 1024 gradient took 203 ms against 6.8 ms on 2 AVX2 cores, and a 6-layer,
    width-256 GPT spent 12 of its 16 s per step in the optimizer. On an AVX512-BF16 CPU bfloat16 is the faster one
    (the whole orthogonalisation of that matrix: 5.3 ms against 11.6 ms in float32, 2 cores)."""
    if device.type != "cpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_computes_bfloat16() else torch.float32


@functools.cache
def cpu_computes_bfloat16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with a fallback
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def orthogonalise(grad: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration towards the nearest semi-orthogonal matrix (U V^T of G = U S V^T), for
    one matrix or a stack of matrices of one shape (the last two dimensions)."""
    a, b, c = coefficients
    x = grad.to(newton_schulz_dtype(grad.device))
    x = x if x.dim() == 3 else x.unsqueeze(0)
    wide = x.size(-2) <= x.size(-1)
    x = x if wide else x.mT  # iterate on the smaller Gram matrix
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):  # fused multiply-adds, as torch's: in bfloat16 each separate rounding costs accuracy
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x if wide else x.mT).reshape(grad.shape).to(grad.dtype)


def _muon_lr_ratio(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """torch's learning-rate adjustment: `match_rms_adamw` scales the orthogonal update to AdamW's typical RMS."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols)) if adjust_lr_fn in (None, "original") else 1.0


class MuonWithAdamW(torch.optim.Optimizer):
    """Two optimizers stepped as one, so the loop, the schedule, accelerate and checkpoints see a single optimizer.
    `param_groups` are the parts' own group dicts: a schedule that sets a group's rate sets it in the part."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.parts = {"muon": muon, "adamw": adamw}
        super().__init__(muon.param_groups + adamw.param_groups, defaults={})

    @torch.no_grad()
    def step(self, closure=None):
        """One step of each part (closures are not supported: no optimizer here needs one)."""
        for part in self.parts.values():
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])
        # Loading gives each part new group dicts: share them again, or the schedule would set stale copies.
        self.param_groups = [group for part in self.parts.values() for group in part.param_groups]


def build_scheduler(optimizer, cfg: OptimConfig, max_steps: int, num_processes: int):
    """The learning-rate schedule over `max_steps` optimizer steps (warmup, then `cfg.lr_scheduler_type`)."""
    # A prepared scheduler steps once per process per optimizer step, hence the factor.
    if cfg.lr_scheduler_type == "warmup_stable_decay":
        schedule = WarmupStableDecay(cfg.warmup_steps, max_steps, cfg.decay_fraction, num_processes)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return get_scheduler(
        cfg.lr_scheduler_type,
        optimizer,
        num_warmup_steps=cfg.warmup_steps * num_processes,
        num_training_steps=max_steps * num_processes,
    )


class WarmupStableDecay:
    """Linear warmup, the peak rate, then a 1 - sqrt decay to zero over the last `decay_fraction` of the run.

    The decay's start is state (saved with the scheduler, as LambdaLR saves a callable object's attributes), so a
    time-budgeted run can move it: `decay_now` starts the decay at the current step for as many steps as the rest
    of the budget holds, so the run ends on a finished decay at its time budget instead of being cut off at the peak.
    Counts are in scheduler steps, `per_step` per optimizer step (one per process under accelerate)."""

    def __init__(self, warmup_steps: int, max_steps: int, decay_fraction: float, per_step: int = 1):
        self.per_step, self.decay_fraction = per_step, decay_fraction
        self.warmup = warmup_steps * per_step
        self.plan(max_steps)

    def plan(self, max_steps: int) -> None:
        """End at `max_steps`, decaying over its last `decay_fraction` (also when a run is extended)."""
        self.end = max_steps * self.per_step
        self.decay_start = self.end - max(1, round(self.decay_fraction * max_steps)) * self.per_step

    def __call__(self, count: int) -> float:
        if count < self.warmup:
            return count / self.warmup
        if count < self.decay_start:
            return 1.0
        return max(0.0, 1.0 - math.sqrt((count - self.decay_start) / (self.end - self.decay_start)))

    def decaying(self, step: int) -> bool:
        return step * self.per_step >= self.decay_start

    def decay_now(self, step: int, decay_steps: int) -> int:
        """Start decaying at optimizer step `step` for `decay_steps` steps (at least one, and never past the planned
        end); returns the last step."""
        self.decay_start = step * self.per_step
        return self.end_within(step, max(1, decay_steps))

    def end_within(self, step: int, steps_left: float) -> int:
        """Bring the end forward to `steps_left` optimizer steps after `step` where that is sooner (never later, so
        the rate only falls); returns the last step. Called at every step of a time-budgeted decay, so that a run
        whose steps slow down still ends at its budget."""
        self.end = min(self.end, (step + max(0, round(steps_left))) * self.per_step)
        return self.last_step

    @property
    def last_step(self) -> int:
        return self.end // self.per_step


def _token_embedding(model: torch.nn.Module) -> torch.nn.Parameter | None:
    """The input token table, or None for a model that does not expose one."""
    try:
        return model.get_input_embeddings().weight
    except (AttributeError, NotImplementedError):
        return None
