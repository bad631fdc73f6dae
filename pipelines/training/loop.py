"""The one training loop, shared by every run kind (pretraining, fine-tuning, baselines).

It knows nothing about model families or objectives: it gets a model whose `forward(**batch)`
returns `.loss` (or a loss function over its outputs, e.g. label smoothing), datasets, a collator and an
evaluation function. Accelerate owns devices, distribution, mixed precision, gradient accumulation and
checkpoint state.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, DistributedType, GradientAccumulationPlugin
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import get_length_grouped_indices

from pipelines.config import RunConfig, TrainConfig
from pipelines.errors import PipelineError, TrainingInterrupted
from pipelines.evaluation import LOWER_IS_BETTER
from pipelines.training.allocator import keep_freed_memory
from pipelines.training.checkpoint import list_checkpoints, load_newest_checkpoint, save_checkpoint
from pipelines.training.optimizer import WarmupStableDecay, build_optimizer, build_scheduler, cpu_computes_bfloat16
from pipelines.training.throughput import flops_per_token, measured_flops_per_token, peak_flops, peak_memory_gb

logger = get_logger(__name__)

EvaluateFn = Callable[[torch.nn.Module, DataLoader], dict[str, float]]
LossFn = Callable[[object, dict], torch.Tensor]
"""(model outputs, batch) → the loss to train on, when it is not the model's own `.loss`."""


def build_accelerator(cfg: TrainConfig, output_dir: str, seed: int) -> Accelerator:
    """An Accelerator whose data order is a pure function of (seed, epoch), so resume is exact."""
    check_devices()
    check_tracker(cfg.report_to)
    if cfg.torch_compile and not inductor_can_compile():
        raise PipelineError("train.torch_compile needs a C++ compiler on CPU (g++, or the one $CXX names): install "
                            "one or set train.torch_compile=false")  # fmt: skip
    try:
        return _accelerator(cfg, output_dir, seed)
    except ImportError as err:  # e.g. a DeepSpeed launcher config without deepspeed installed
        raise PipelineError(f"the launcher config needs a library that is not installed: {err}") from None


def inductor_can_compile() -> bool:
    """Whether `torch.compile`'s inductor can build kernels here: on CPU it compiles C++ (`$CXX`, else g++), and
    without a compiler it would fail only inside the first training step."""
    return torch.accelerator.is_available() or shutil.which(os.environ.get("CXX", "g++")) is not None


def check_tracker(name: str) -> None:
    """Refuse a tracker whose package is missing up front: accelerate would drop it with only a warning."""
    packages = ("tensorboard", "tensorboardX") if name == "tensorboard" else (name,)  # each named as it imports
    if name != "none" and not any(importlib.util.find_spec(p) for p in packages):
        raise PipelineError(f"train.report_to is '{name}', whose package is not installed: pip install {packages[0]} "
                            "(or set train.report_to=none)")  # fmt: skip


def check_devices() -> None:
    """Refuse more processes per machine than GPUs before they collide on one device."""
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and per_machine > torch.cuda.device_count():
        raise PipelineError(
            f"{per_machine} processes per machine but only {torch.cuda.device_count()} GPU(s); "
            "lower num_processes in the launcher config"
        )


def _accelerator(cfg: TrainConfig, output_dir: str, seed: int) -> Accelerator:
    # accelerate keeps the first Accelerator's settings for the whole process: a later run in the same Python
    # process (a notebook, a script chaining runs) would keep its precision (and an interrupted run's gradient sync
    # state), and a different precision is refused ("restart your runtime"). Each run starts from its own settings,
    # as a new command's process would; the distributed process group (PartialState) stays.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    # A process-wide switch too: set by every run, so that one run's choice never carries over to the next. Only a
    # warning where a kernel has no deterministic version (e.g. cuBLAS without CUBLAS_WORKSPACE_CONFIG set).
    deterministic = cfg.deterministic if cfg.deterministic is not None else not torch.accelerator.is_available()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if cfg.torch_compile:
        # Each run compiles its own model's training forward (`set_training_forward`), which would only add to
        # dynamo's entries for that code (8, then it runs eagerly without a word). Start every run from a clean
        # compiler state, as a new process would; the on-disk caches still serve it.
        torch.compiler.reset()
    return Accelerator(
        # Without any accelerator, `accelerate launch --multi_gpu` processes must use gloo on CPU.
        cpu=not torch.accelerator.is_available(),
        mixed_precision=_supported_precision(cfg),
        # Sync strictly every k micro-batches, also across epoch ends, so step k·n ↔ micro-batch n·k.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_dir=output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
    )


def _supported_precision(cfg: TrainConfig) -> str | None:
    """The requested autocast mode, or "no" (with `mixed_precision_fallback`) where the device cannot do it."""
    if cfg.mixed_precision not in ("bf16", "fp16"):
        return cfg.mixed_precision
    if cfg.mixed_precision == "fp16":  # accelerate runs fp16 only on accelerators; on CPU it silently stays fp32
        supported = torch.accelerator.is_available()
    elif torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = not torch.accelerator.is_available() and torch.backends.mkldnn.is_available()
        if supported and not cpu_computes_bfloat16():  # oneDNN then converts to fp32 and back around every op
            warnings.warn(
                "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so bf16 autocast is emulated "
                "and may be slower than fp32 (train.mixed_precision=no); time a few steps of each",
                stacklevel=2,
            )
    if supported:
        return cfg.mixed_precision
    if cfg.mixed_precision_fallback:
        # Runs before the Accelerator exists, so accelerate's logger is not usable yet.
        warnings.warn(f"{cfg.mixed_precision} is not supported on this device; training in fp32", stacklevel=2)
        return "no"
    raise PipelineError(
        f"train.mixed_precision is {cfg.mixed_precision} but this device cannot do it; choose another mode, "
        "or set train.mixed_precision_fallback=true to fall back to fp32"
    )


class MetricsLog:
    """`metrics.jsonl` (one JSON object per logged or evaluated step) plus accelerate's trackers."""

    def __init__(self, accelerator: Accelerator, path: Path, resume_step: int):
        self.accelerator = accelerator
        self.path = path
        if accelerator.is_main_process and path.exists():
            # Records written after the checkpoint we resume from belong to a trajectory we replay.
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        """Append one record (main process) and forward its numbers to the trackers."""
        if self.accelerator.is_main_process:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        numbers = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        self.accelerator.log(numbers, step=record["step"])


def _step_of(line: str) -> float:
    """The step of a metrics record; a line cut off by a hard kill counts as past every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ABORT_GRACE_S = 1.0
"""How long a second stop signal may wait for the main thread before the process ends itself."""


@contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """Turn the first Ctrl-C/SIGTERM into a flag the loop checks at step boundaries; a second one aborts.

    Python runs a signal handler only between two bytecodes of the main thread: a signal that arrives during
    a long native call (a large matmul, a collective, a blocking read) waits for the call to return, and two
    that arrive during the same call reach the handler once, so the second would be lost. A watcher thread
    therefore counts the signals as the interpreter's C-level handler receives them (through the wakeup fd);
    if the block has not been left within ABORT_GRACE_S of the second (the handler's `KeyboardInterrupt` did not
    arrive, or something swallowed it), it ends the process with exit code 130. Checkpoints stay whole either
    way: a save cut short never replaces the last one.
    """
    flag = [False]
    left = threading.Event()  # the block is over: nothing for the watcher to abort

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # set_wakeup_fd requires it: the C handler must never block
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_abort_on_second_signal, args=(read_fd, left), daemon=True).start()
    try:
        yield flag
    finally:
        left.set()
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher reads end-of-file and exits
        for sig, old in previous.items():
            signal.signal(sig, old)


def _abort_on_second_signal(read_fd: int, left: threading.Event) -> None:
    """Watcher thread of `stop_requests`: exit with code 130 when the second stop signal goes unanswered."""
    received = 0
    while chunk := os.read(read_fd, 64):  # one byte per signal received (its number); b"" at end-of-file
        before, received = received, received + sum(byte in STOP_SIGNALS for byte in chunk)
        if before < 2 <= received and not left.wait(ABORT_GRACE_S):
            print("aborted by a second interrupt; run the same command to resume", file=sys.stderr, flush=True)
            os._exit(130)
    os.close(read_fd)


@dataclass
class TrainState:
    """Where a run stands. `saved` is what a checkpoint keeps besides the model, optimizer and data position."""

    saved: dict
    """step, tokens_seen, train_runtime, plan, early_stopping, eval_losses: restored on resume."""
    step: int
    tokens_seen: int
    max_steps: int
    """The step the run ends at; a time budget may bring it forward (a WSD decay started early)."""
    running_loss: torch.Tensor
    """Sum of the micro-batch losses since the last log, kept on the device (no per-step sync)."""
    running_count: int = 0
    grad_norm: torch.Tensor | None = None
    """Of the last optimizer step, before clipping, while clipping is on (DeepSpeed reports none)."""
    token_flops: float | None = None
    """Measured on the first batch."""
    last_eval: dict = field(default_factory=dict)


class Clock:
    """The run's wall time (earlier sessions included), its training time (evaluation and saving excluded),
    and the token rate of the current logging window."""

    def __init__(self, before: float, tokens_seen: int):
        self.before = before
        self.start = self.window_start = time.perf_counter()
        self.window_tokens = tokens_seen
        self.paused_total = 0.0
        self.first_step: tuple[int, float] | None = None

    def runtime(self) -> float:
        return self.before + time.perf_counter() - self.start

    def trained(self) -> float:
        return self.runtime() - self.paused_total

    def window_rate(self, tokens_seen: int) -> float:
        """Tokens per second since the last call; starts the next window."""
        now = time.perf_counter()
        rate = (tokens_seen - self.window_tokens) / max(now - self.window_start, 1e-9)
        self.window_start, self.window_tokens = now, tokens_seen
        return rate

    def step_rate(self, step: int) -> float | None:
        """Optimizer steps per second of training since this session's first step. Called after every step; the
        first call marks that step and returns None. The first step compiles the model or loads its graphs (about
        1 s of a compiled 55 s benchmark run whose other steps take 45 ms, 30 s uncached), so it is left out."""
        if self.first_step is None:
            self.first_step = (step, self.trained())
            return None
        steps, seconds = step - self.first_step[0], self.trained() - self.first_step[1]
        return steps / seconds if steps > 0 and seconds > 0 else None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside does not count as training (the budget) or in the token rate."""
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.window_start += spent
            self.paused_total += spent


@dataclass
class Run:
    """What the named steps of `train` share: the prepared objects, the trackers, the clock and the state."""

    cfg: RunConfig
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    wsd: WarmupStableDecay | None
    train_loader: DataLoader
    eval_loader: DataLoader | None
    evaluate: EvaluateFn
    metrics: MetricsLog
    stopper: EarlyStopping
    progress: ProgressWatch
    clock: Clock
    bar: tqdm
    state: TrainState
    device_peak: float | None
    loss_fn: LossFn | None


def train(
    cfg: RunConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_dataset,
    eval_dataset,
    train_collator: Callable,
    eval_collator: Callable,
    evaluate: EvaluateFn,
    resume: bool,
    loss_fn: LossFn | None = None,
) -> tuple[dict, torch.nn.Module]:
    """Train for `cfg.train.max_steps` optimizer steps; returns the final evaluation and run statistics,
    and the prepared (possibly wrapped) model, which the export must use.

    With `train.early_stopping_patience`, training stops once the watched metric has not improved for
    that many evaluations, and the best weights seen are restored before returning.
    """
    run = _start(cfg, accelerator, model, train_dataset, eval_dataset, train_collator, eval_collator, evaluate, resume,
                 loss_fn)  # fmt: skip
    state = run.state
    run.model.train()
    with stop_requests() as stop:
        for batch in _batches_left(run):
            _forward_backward(run, batch)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            run.bar.update(1)
            out_of_time = _check_time_budget(run)
            _maybe_log(run)
            with run.clock.paused():  # evaluation and saving are not training
                _maybe_evaluate(run, out_of_time)
                _maybe_save(run, out_of_time, stop_requested=_any_process(accelerator, stop[0]))
            if _finished(run, out_of_time):
                break
    run.bar.close()
    return _results(run), run.model


def _start(cfg: RunConfig, accelerator: Accelerator, model: torch.nn.Module, train_dataset, eval_dataset,
           train_collator: Callable, eval_collator: Callable, evaluate: EvaluateFn, resume: bool,
           loss_fn: LossFn | None) -> Run:  # fmt: skip
    """Check the options, build the optimizer, schedule and loaders, prepare them, and restore a checkpoint."""
    tcfg, out = cfg.train, Path(cfg.output_dir)
    _check_options(cfg, accelerator, model)
    if accelerator.device.type == "cpu":
        keep_freed_memory()
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, tcfg.max_steps, accelerator.num_processes)
    wsd = next((f for f in getattr(scheduler, "lr_lambdas", []) if isinstance(f, WarmupStableDecay)), None)
    train_loader, eval_loader = _loaders(tcfg, cfg.seed, train_dataset, eval_dataset, train_collator, eval_collator)
    set_training_forward(model, loss_only=loss_fn is None, compiled=tcfg.torch_compile)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    eval_loader = accelerator.prepare(eval_loader) if eval_loader is not None else None
    _check_loaders(tcfg, accelerator, train_dataset, train_loader, eval_loader)

    saved, extra = _restore(accelerator, out / "checkpoints", resume, tcfg, wsd)
    metrics = MetricsLog(accelerator, out / "metrics.jsonl", resume_step=saved["step"])
    if tcfg.report_to != "none":  # TensorBoard's project is its log folder; the others' is the package
        project = "tensorboard" if tcfg.report_to == "tensorboard" else "pipelines"
        accelerator.init_trackers(project, config=_flat_hparams(cfg))
    stopper = EarlyStopping(tcfg.early_stopping_patience, tcfg.metric_for_best_model, saved.get("early_stopping"))
    stopper.best_weights = extra.get(EarlyStopping.WEIGHTS_FILE)
    # A time-budgeted WSD run ends where its decay ends (restored with the scheduler on resume).
    max_steps = wsd.last_step if wsd is not None else tcfg.max_steps
    state = TrainState(saved, saved["step"], saved["tokens_seen"], max_steps,
                       running_loss=torch.zeros((), device=accelerator.device))  # fmt: skip
    bar = tqdm(total=max_steps, initial=state.step, desc="training", disable=not accelerator.is_local_main_process)
    device_peak = peak_flops(accelerator.device, accelerator.mixed_precision, tcfg.peak_flops)
    return Run(cfg, accelerator, model, optimizer, scheduler, wsd, train_loader, eval_loader, evaluate, metrics,
               stopper, ProgressWatch(saved.get("eval_losses")), Clock(saved["train_runtime"], state.tokens_seen),
               bar, state, device_peak, loss_fn)  # fmt: skip


def set_training_forward(model: torch.nn.Module, loss_only: bool, compiled: bool) -> None:
    """The forward a training step runs, set before accelerate wraps it (in autocast, under mixed precision);
    evaluation (eval mode) runs the model's own forward, eagerly.

    `loss_only`: the training forward returns the loss alone, which is all the loop reads when the model computes
    its own loss. Under mixed precision accelerate converts every output to fp32, and the logits (batch x length x
    vocabulary) are a step's largest tensor; compiled, converting them cost the benchmark's model 2-4 ms of a 50 ms
    step (docs/benchmarks.md, "Seventeenth sweep").

    `compiled`: `torch.compile` (inductor) compiles this training forward alone, inside accelerate's autocast. Had
    accelerate compiled its own wrapper, autocast would be inside the graph, which AOTAutograd's cache refuses: every
    run would trace forward and backward again, 2 s of the benchmark's 55 s budget, where a cached run's first step
    takes 0.9 s (docs/benchmarks.md, "Nineteenth sweep"). Compiling evaluation too would cost seconds per run (twice
    where a shorter last batch recompiles), and that batch would mark the batch size dynamic for later graphs.

    A bound method, so that a deep copy of the model runs the copy, not this model."""
    if not (loss_only or compiled):
        return
    step = _loss_only_forward if loss_only else type(model).forward
    step = torch.compile(step) if compiled else step

    def forward(self: torch.nn.Module, *args, **kwargs):
        if not self.training:
            return type(self).forward(self, *args, **kwargs)
        return step(self, *args, **kwargs)

    model.forward = types.MethodType(forward, model)


def _loss_only_forward(self: torch.nn.Module, *args, **kwargs):
    outputs = type(self).forward(self, *args, **kwargs)
    if getattr(outputs, "loss", None) is None:  # no labels: the whole output
        return outputs
    return type(outputs)(loss=outputs.loss)


def _check_options(cfg: RunConfig, accelerator: Accelerator, model: torch.nn.Module) -> None:
    if cfg.train.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise PipelineError(f"{type(model).__name__} does not support train.gradient_checkpointing")
        model.gradient_checkpointing_enable()
    if accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return
    # Muon orthogonalises whole matrices and LoRA merges its adapters into whole ones: FSDP and DeepSpeed shard them.
    if cfg.optim.muon:
        raise PipelineError(f"optim.name {cfg.optim.name} orthogonalises whole matrices, which FSDP and DeepSpeed "
                            "shard; use DDP (configs/accelerate/multi_gpu.yaml) or optim.name adamw")  # fmt: skip
    if cfg.model.lora is not None:
        raise PipelineError("model.lora merges its adapters into whole matrices at export, which FSDP and DeepSpeed "
                            "shard; use DDP (configs/accelerate/multi_gpu.yaml)")  # fmt: skip


def _loaders(tcfg: TrainConfig, seed: int, train_dataset, eval_dataset, train_collator: Callable,
             eval_collator: Callable) -> tuple[DataLoader, DataLoader | None]:  # fmt: skip
    streaming = isinstance(train_dataset, torch.utils.data.IterableDataset)  # shuffled by its own buffer
    batch = tcfg.per_device_train_batch_size
    grouped = LengthGroupedSampler(train_dataset, batch, seed) if tcfg.group_by_length else None
    train_loader = DataLoader(
        train_dataset,
        batch_size=batch,
        shuffle=not streaming and grouped is None,
        sampler=grouped,
        drop_last=True,
        collate_fn=train_collator,
        num_workers=tcfg.dataloader_num_workers,
    )
    if eval_dataset is None:
        return train_loader, None
    return train_loader, DataLoader(eval_dataset, batch_size=tcfg.per_device_eval_batch_size, collate_fn=eval_collator)


class LengthGroupedSampler(torch.utils.data.Sampler):
    """A shuffle whose batches hold examples of similar length (`train.group_by_length`): less padding per batch.

    transformers' grouping (shuffle, cut into groups of 50 batches, sort each group by length), reseeded by
    (seed, epoch) so that resume is exact. Length counts `input_ids` and, for text-to-text pairs, `labels`.
    """

    def __init__(self, dataset, batch_size: int, seed: int):
        columns = [c for c in ("input_ids", "labels") if c in dataset.column_names]
        rows = dataset.select_columns(columns)  # a classifier's labels are ints, a text-to-text pair's token lists
        self.lengths = [sum(len(v) for v in row.values() if isinstance(v, list)) for row in rows]
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _check_loaders(tcfg: TrainConfig, accelerator: Accelerator, train_dataset, train_loader: DataLoader,
                   eval_loader: DataLoader | None) -> None:  # fmt: skip
    if tcfg.early_stopping_patience is not None and eval_loader is None:
        raise PipelineError("train.early_stopping_patience needs validation data to watch")
    if not isinstance(train_dataset, torch.utils.data.IterableDataset) and len(train_loader) == 0:
        raise PipelineError(
            f"the training set has {len(train_dataset)} examples, fewer than one batch of "
            f"{tcfg.per_device_train_batch_size} x {accelerator.num_processes} process(es)"
        )


def _restore(accelerator: Accelerator, root: Path, resume: bool, tcfg: TrainConfig,
             wsd: WarmupStableDecay | None) -> tuple[dict, dict]:  # fmt: skip
    """The saved state and extra files of the newest checkpoint (model, optimizer and data position restored),
    or a fresh state."""
    checkpoints = list_checkpoints(root) if resume else []
    if not checkpoints:
        return {"step": 0, "tokens_seen": 0, "train_runtime": 0.0}, {}
    resumed, saved, extra = load_newest_checkpoint(accelerator, checkpoints)
    logger.info(f"resuming from {resumed} (step {saved['step']})", main_process_only=True)
    _follow_extension(saved, tcfg, wsd)
    return saved, extra


def _batches_left(run: Run) -> Iterator[dict]:
    """The micro-batches from the resumed position on; none when the run resumed at its end (then only the final
    evaluation is left)."""
    state = run.state
    if state.step >= state.max_steps or run.stopper.should_stop:
        return iter(())
    start = state.step * run.cfg.train.gradient_accumulation_steps
    return _batches(run.accelerator, run.train_loader, start)


def _forward_backward(run: Run, batch: dict) -> None:
    """One micro-batch: loss, gradients, and (every `gradient_accumulation_steps`) a clipped optimizer step."""
    accelerator, state, max_norm = run.accelerator, run.state, run.cfg.optim.max_grad_norm
    if state.token_flops is None:  # counted before the step, while the gradients are still empty
        state.token_flops = _flops_per_token(accelerator.unwrap_model(run.model), batch)
    with accelerator.accumulate(run.model):
        outputs = run.model(**batch)
        loss = outputs.loss if run.loss_fn is None else run.loss_fn(outputs, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_norm > 0:
            # The norm before clipping, logged: spikes and a steady climb are early signs of divergence.
            state.grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), max_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    state.running_loss += loss.detach()
    state.running_count += 1
    state.tokens_seen += batch["input_ids"].numel() * accelerator.num_processes


def _check_time_budget(run: Run) -> bool:
    """True when the budget says stop now; a budget that moved a WSD decay moves the run's end with it."""
    state, tcfg = run.state, run.cfg.train
    rate = run.clock.step_rate(state.step) if tcfg.max_runtime is not None else None
    out_of_time = _time_budget(
        run.accelerator, tcfg.max_runtime, run.cfg.optim.decay_fraction, run.wsd, state.step, run.clock.trained(), rate
    )  # every process stops on the same step
    if run.wsd is not None and run.wsd.last_step != state.max_steps:
        state.max_steps = run.bar.total = run.wsd.last_step
    return out_of_time


def _maybe_log(run: Run) -> None:
    state, accelerator = run.state, run.accelerator
    if state.step % run.cfg.train.logging_steps and state.step != state.max_steps:
        return
    # One reduction per logging step: the loss stays on the device in between.
    train_loss = accelerator.reduce(state.running_loss / state.running_count, reduction="mean").item()
    state.running_loss.zero_()
    state.running_count = 0
    tokens_per_second = run.clock.window_rate(state.tokens_seen)
    per_device = tokens_per_second / accelerator.num_processes
    record = {
        "step": state.step,
        "loss": train_loss,
        "learning_rate": run.scheduler.get_last_lr()[0],
        "tokens_seen": state.tokens_seen,
        "tokens_per_second": tokens_per_second,
        "tokens_per_second_per_device": per_device,
        "elapsed": run.clock.runtime(),
    }
    if run.device_peak:
        record["mfu"] = state.token_flops * per_device / run.device_peak
    if state.grad_norm is not None:
        record["grad_norm"] = float(state.grad_norm)
    run.metrics.write(record)
    run.bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_second:,.0f}")
    if not math.isfinite(train_loss):
        raise PipelineError(f"training loss became {train_loss} at step {state.step}; lower optim.learning_rate")


def _maybe_evaluate(run: Run, out_of_time: bool) -> None:
    state = run.state
    due = state.step % run.cfg.train.eval_steps == 0 or state.step == state.max_steps or out_of_time
    if run.eval_loader is None or not due:
        return
    state.last_eval = run.evaluate(run.model, run.eval_loader)
    run.metrics.write({"step": state.step, **{f"eval_{k}": v for k, v in state.last_eval.items()},
                       "elapsed": run.clock.runtime()})  # fmt: skip
    run.progress.update(state.step, state.last_eval)
    run.stopper.update(state.step, state.last_eval, run.accelerator.unwrap_model(run.model))


def _maybe_save(run: Run, out_of_time: bool, stop_requested: bool) -> None:
    """A checkpoint every `save_steps`, at the run's last step (so raising train.max_steps later continues exactly
    where it ended), and on a stop request, which then ends the command."""
    state, tcfg = run.state, run.cfg.train
    interrupted = stop_requested and state.step < state.max_steps
    last = state.step >= state.max_steps or out_of_time or run.stopper.should_stop
    if state.step % tcfg.save_steps and not last and not interrupted:
        return
    state.saved.update(
        plan=[tcfg.max_steps, tcfg.max_runtime],
        step=state.step,
        tokens_seen=state.tokens_seen,
        train_runtime=run.clock.runtime(),
        early_stopping=run.stopper.state(),
        eval_losses=run.progress.losses,
    )
    best = {EarlyStopping.WEIGHTS_FILE: run.stopper.best_weights} if run.stopper.best_weights is not None else {}
    path = save_checkpoint(run.accelerator, Path(run.cfg.output_dir) / "checkpoints", state.step, state.saved,
                           keep=tcfg.save_total_limit, extra=best)  # fmt: skip
    if interrupted:
        run.bar.close()
        raise TrainingInterrupted(
            f"interrupted at step {state.step}; checkpoint saved to {path}. Run the same command to resume."
        )


def _finished(run: Run, out_of_time: bool) -> bool:
    state = run.state
    if run.stopper.should_stop:
        logger.info(f"early stopping at step {state.step}: best {run.stopper.describe()}", main_process_only=True)
        return True
    if out_of_time:
        logger.info(f"time budget of {run.cfg.train.max_runtime:.0f} s used up at step {state.step}",
                    main_process_only=True)  # fmt: skip
        return True
    return state.step >= state.max_steps


def _results(run: Run) -> dict:
    """The final evaluation (of the best weights, with early stopping) and the run's statistics."""
    state, accelerator = run.state, run.accelerator
    if run.stopper.best_weights is not None:
        accelerator.unwrap_model(run.model).load_state_dict(run.stopper.best_weights)
        state.last_eval = run.stopper.best_eval
    if run.eval_loader is not None and not state.last_eval:  # resumed at the end, e.g. after a crash during export
        state.last_eval = run.evaluate(run.model, run.eval_loader)
    runtime = run.clock.runtime()
    per_device = state.tokens_seen / max(runtime, 1e-9) / accelerator.num_processes
    results = {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "train_runtime": runtime,
        "train_tokens_per_second": per_device * accelerator.num_processes,
        "train_tokens_per_second_per_device": per_device,
        "flops_per_token": state.token_flops,
        "train_flops": (state.token_flops or 0.0) * state.tokens_seen,
        "peak_memory_gb": peak_memory_gb(accelerator.device),
        "stalled_evaluations": run.progress.stalled,
        **{f"eval_{k}": v for k, v in state.last_eval.items()},
    }
    if run.device_peak and state.token_flops:
        results["mfu"] = state.token_flops * per_device / run.device_peak  # wall time includes evaluation and saving
    return results


class ProgressWatch:
    """Says, as it happens, when the validation loss stops falling: a stalled or diverging run shows in the run's
    output and `eval_results.json` (`stalled_evaluations`), not first in a table afterwards."""

    def __init__(self, losses: list | None = None):
        self.losses = list(losses or [])
        """(step, validation loss) of every evaluation so far."""

    def update(self, step: int, metrics: dict) -> None:
        """Record an evaluation; warn when its loss is not below the previous one's."""
        if "loss" not in metrics:
            return
        if self.losses and not metrics["loss"] < self.losses[-1][1]:
            before, loss = self.losses[-1], metrics["loss"]
            verb = "rose" if loss > before[1] else "did not fall"
            logger.warning(f"validation loss {verb} from {before[1]:.4f} (step {before[0]}) to {loss:.4f} (step "
                           f"{step}): the run has stalled or is diverging", main_process_only=True)  # fmt: skip
        self.losses.append((step, metrics["loss"]))

    @property
    def stalled(self) -> list[int]:
        """Steps whose evaluation did not improve on the one before."""
        return [s for (_, a), (s, b) in zip(self.losses, self.losses[1:], strict=False) if not b < a]


class EarlyStopping:
    """Watch one evaluation metric; count evaluations without improvement; keep the best weights in memory.

    Lower is better for loss-like metrics (`loss`, `perplexity`, `bits_per_byte`), higher for the rest.
    """

    WEIGHTS_FILE = "best_weights.extra.pt"
    """Checkpoint file that carries the best weights, so a resumed run can still restore them."""

    def __init__(self, patience: int | None, metric: str, saved: dict | None = None):
        self.patience, self.metric = patience, metric
        self.sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        saved = saved or {}
        self.best, self.best_step, self.bad = saved.get("best"), saved.get("best_step"), saved.get("bad", 0)
        self.best_weights, self.best_eval = None, saved.get("best_eval", {})

    def update(self, step: int, metrics: dict, model) -> None:
        """Record an evaluation; keep a CPU copy of the weights when it is the best so far."""
        if self.patience is None:
            return
        if self.metric not in metrics:
            raise PipelineError(
                f"train.metric_for_best_model is '{self.metric}', but evaluation reports: {', '.join(metrics)}"
            )
        value = self.sign * metrics[self.metric]
        if self.best is None or value > self.best:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            self.best_eval = dict(metrics)
        else:
            self.bad += 1

    @property
    def should_stop(self) -> bool:
        """True once `patience` evaluations in a row brought no improvement."""
        return self.patience is not None and self.bad >= self.patience

    def state(self) -> dict:
        """What a checkpoint keeps so a resumed run counts on (weights come from the checkpoint itself)."""
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad, "best_eval": self.best_eval}

    def describe(self) -> str:
        """The best value and the step it came from."""
        return f"{self.metric}={self.sign * self.best:.4f} at step {self.best_step}"


def _follow_extension(state: dict, tcfg: TrainConfig, wsd: WarmupStableDecay | None) -> None:
    """A run resumed with a raised train.max_steps or max_runtime: its restored schedule still ends (and a WSD
    decay may have ended) where the old plan did, so the schedule is planned again for the new end."""
    plan = [tcfg.max_steps, tcfg.max_runtime]
    if state.get("plan", plan) == plan:
        return
    budget = f" and {tcfg.max_runtime:g} s" if tcfg.max_runtime else ""
    logger.info(f"extending the run to {tcfg.max_steps} steps{budget}", main_process_only=True)
    if wsd is not None:  # a decayed rate warms back up to the stable one and decays again at the new end
        wsd.plan(tcfg.max_steps)


def _batches(accelerator: Accelerator, loader: DataLoader, start_micro_batch: int) -> Iterator[dict]:
    """Endless micro-batches over epochs, starting at `start_micro_batch` (resume skips, never replays).

    A sized loader jumps straight to the batch; a streaming one has no length, so it re-reads and
    discards the batches already trained on (slower, but the same data in the same order).
    """
    if not isinstance(loader.dataset, torch.utils.data.IterableDataset):
        epoch, skip = divmod(start_micro_batch, len(loader))
        while True:
            loader.set_epoch(epoch)  # the shuffle order is seeded by (seed, epoch)
            if hasattr(loader.dataset, "set_epoch"):  # accelerate skips it under DDP: blocks cut by epoch
                loader.dataset.set_epoch(epoch)
            yield from accelerator.skip_first_batches(loader, skip) if skip else loader
            epoch, skip = epoch + 1, 0
    epoch, skip = 0, start_micro_batch
    while True:
        loader.set_epoch(epoch)  # also reseeds the dataset's shuffle buffer
        produced = 0
        for batch in loader:
            produced += 1
            if skip:
                skip -= 1
                continue
            yield batch
        if produced == 0:
            raise PipelineError("the streaming training set yields no full batch")
        epoch += 1


def _flops_per_token(model: torch.nn.Module, batch: dict) -> float:
    """Measured training FLOPs per token; the analytic estimate where the model cannot be counted."""
    measured = measured_flops_per_token(model, batch)
    if measured is None:
        logger.warning("could not count FLOPs on a copy of the model; using the analytic 6·N estimate",
                       main_process_only=True)  # fmt: skip
        return flops_per_token(model, batch["input_ids"].shape[1])
    return measured


def _time_budget(accelerator: Accelerator, max_runtime: float | None, decay_fraction: float,
                 wsd: WarmupStableDecay | None, step: int, trained: float, rate: float | None) -> bool:  # fmt: skip
    """True when the run must stop now for its time budget. A warmup-stable-decay run never stops here: once
    (1 - decay_fraction) of the budget is trained, its decay starts, as many steps as the rest of the budget
    holds at `rate` (steps per second), and the run ends where the decay ends. Every step of the decay sizes the
    rest again and brings the end forward if the steps have slowed, so the run never trains past its budget by
    more than a step."""
    if max_runtime is None:
        return False
    if wsd is None:
        return _any_process(accelerator, trained >= max_runtime)
    if wsd.decaying(step):
        if rate is not None:
            wsd.end_within(step, _mean(accelerator, decay_steps(step, trained, rate, max_runtime, decay_fraction)))
    elif _any_process(accelerator, trained >= (1 - decay_fraction) * max_runtime):
        steps = _mean(accelerator, decay_steps(step, trained, rate, max_runtime, decay_fraction))
        last = wsd.decay_now(step, round(steps))
        logger.info(f"{trained:.0f} s trained: decaying the learning rate until step {last}", main_process_only=True)
    return False


def _mean(accelerator: Accelerator, value: float) -> float:
    """The mean over processes: every process decays from the same step for the same steps."""
    if accelerator.num_processes == 1:
        return value
    return accelerator.reduce(torch.tensor(float(value), device=accelerator.device), reduction="mean").item()


def decay_steps(step: int, trained: float, rate: float | None, max_runtime: float, decay_fraction: float) -> float:
    """The steps left in a time budget at `rate` steps per second; without a rate yet, the decay's share of the
    steps taken so far, which counts the first step's compiling as training."""
    if rate is None:
        return step * decay_fraction / (1.0 - decay_fraction)
    return max(0.0, max_runtime - trained) * rate


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True if any process got a stop request, so every process saves and stops at the same step."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), reduction="sum").item())


def _flat_hparams(cfg: RunConfig) -> dict:
    """The config as flat scalar hparams, which is what TensorBoard accepts."""
    flat = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk(cfg.to_dict(), "")
    return flat
