"""End-to-end: a tiny GPT pretrains, its loss falls, it exports, reloads, resumes exactly."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from pipelines.config import load_config
from pipelines.errors import PipelineError, TrainingInterrupted
from pipelines.pretrain import pretrain
from pipelines.training import loop


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_loss_falls_and_export_loads_with_transformers_alone(tiny_overrides):
    cfg = load_config(None, tiny_overrides)
    results = pretrain(cfg)
    run = Path(cfg.output_dir)

    records = read_metrics(run)
    losses = list(train_losses(records).values())
    assert len(losses) == cfg.train.max_steps
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.75  # a real drop (noise is ~0.05)
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert results["eval_bits_per_byte"] > 0 and results["tokens_seen"] == 30 * 8 * 32

    final = run / "final"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "README.md"):
        assert (final / name).is_file(), name
    assert "bits per byte" in (final / "README.md").read_text()
    assert json.loads((run / "eval_results.json").read_text())["eval_loss"] == pytest.approx(evals[-1])
    assert (run / "config.yaml").is_file()

    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.config.vocab_size >= len(tokenizer)
    generator = pipeline("text-generation", model=str(final))
    text = generator("Return the", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("Return the") and len(text) > len("Return the")


def test_llama_arch_trains(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "model.arch=llama", "train.max_steps=20"])
    pretrain(cfg)
    losses = list(train_losses(read_metrics(Path(cfg.output_dir))).values())
    assert losses[-1] < losses[0] - 0.75
    model = AutoModelForCausalLM.from_pretrained(Path(cfg.output_dir) / "final")
    assert model.config.model_type == "llama"


def test_interrupted_run_resumes_on_the_same_trajectory(tiny_overrides, tmp_path, monkeypatch):
    steps = ["train.max_steps=20", "train.save_steps=5", "train.eval_steps=5"]
    reference_cfg = load_config(None, [*tiny_overrides, *steps, f"output_dir={tmp_path / 'reference'}"])
    pretrain(reference_cfg)
    reference = read_metrics(Path(reference_cfg.output_dir))

    cfg = load_config(None, [*tiny_overrides, *steps, f"output_dir={tmp_path / 'interrupted'}"])
    run = Path(cfg.output_dir)
    real_any_process = loop._any_process
    calls = {"n": 0}

    def stop_at_step_12(accelerator, flag):
        calls["n"] += 1
        return real_any_process(accelerator, flag) or calls["n"] == 12

    monkeypatch.setattr(loop, "_any_process", stop_at_step_12)
    with pytest.raises(TrainingInterrupted, match="step 12"):
        pretrain(cfg)
    monkeypatch.setattr(loop, "_any_process", real_any_process)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000010", "step-00000012"]
    assert not (run / "final").exists()

    # A crash in the middle of a later save must not be mistaken for a checkpoint.
    (run / "checkpoints" / "step-00000015.tmp").mkdir()
    # Records past the checkpoint (as a hard crash would leave) are replaced on resume.
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 13, "loss": 123.0}) + "\n")

    pretrain(cfg)
    resumed = read_metrics(run)
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    ref_losses, res_losses = train_losses(reference), train_losses(resumed)
    for step in ref_losses:
        assert res_losses[step] == pytest.approx(ref_losses[step], rel=1e-5, abs=1e-6), step
    ref_eval = [r["eval_loss"] for r in reference if "eval_loss" in r]
    res_eval = [r["eval_loss"] for r in resumed if "eval_loss" in r]
    assert res_eval == pytest.approx(ref_eval, rel=1e-5)
    assert not list((run / "checkpoints").glob("*.tmp"))


def test_finished_or_different_run_is_never_overwritten(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=3"])
    pretrain(cfg)
    with pytest.raises(PipelineError, match="finished run"):
        pretrain(cfg)
    other = load_config(None, [*tiny_overrides, "train.max_steps=3", "optim.learning_rate=5e-3"])
    with pytest.raises(PipelineError, match=r"different run \(differs in: optim.learning_rate\)"):
        pretrain(other)
    before = (Path(cfg.output_dir) / "final" / "model.safetensors").read_bytes()
    pretrain(other, overwrite=True)
    assert (Path(cfg.output_dir) / "final" / "model.safetensors").read_bytes() != before
    assert "learning_rate: 0.005" in (Path(cfg.output_dir) / "config.yaml").read_text()


def test_raising_max_steps_trains_a_finished_run_on_along_the_same_trajectory(tiny_overrides, tmp_path):
    recipe = [*tiny_overrides, "optim.lr_scheduler_type=constant_with_warmup", "train.save_steps=100"]
    straight = load_config(None, [*recipe, "train.max_steps=20", f"output_dir={tmp_path / 'straight'}"])
    pretrain(straight)
    short = [*recipe, f"output_dir={tmp_path / 'extended'}"]
    pretrain(load_config(None, [*short, "train.max_steps=12"]))
    with pytest.raises(PipelineError, match=r"different run \(differs in: train.max_steps\)"):
        pretrain(load_config(None, [*short, "train.max_steps=8"]))  # lowering is not extending
    extended = load_config(None, [*short, "train.max_steps=20"])
    results = pretrain(extended)
    assert "max_steps: 20" in (Path(extended.output_dir) / "config.yaml").read_text()
    reference, resumed = (
        train_losses(read_metrics(Path(straight.output_dir))),
        train_losses(read_metrics(Path(extended.output_dir))),
    )
    assert list(resumed) == list(range(1, 21))
    assert [resumed[s] for s in resumed] == pytest.approx([reference[s] for s in resumed], rel=1e-5, abs=1e-6)
    assert results["eval_loss"] == pytest.approx(
        json.loads((Path(straight.output_dir) / "eval_results.json").read_text())["eval_loss"], rel=1e-5
    )


def test_an_extended_wsd_run_warms_back_to_the_peak_and_decays_again_at_its_new_end(tiny_overrides):
    recipe = [*tiny_overrides, "optim.lr_scheduler_type=warmup_stable_decay", "optim.decay_fraction=0.25"]
    pretrain(load_config(None, [*recipe, "train.max_steps=12"]))
    pretrain(load_config(None, [*recipe, "train.max_steps=24"]))
    rates = {
        r["step"]: r["learning_rate"]
        for r in read_metrics(Path(tiny_overrides[-1].split("=", 1)[1]))
        if "learning_rate" in r
    }
    assert rates[12] < 0.2e-2 and rates[13] == pytest.approx(1e-2) and rates[18] == pytest.approx(1e-2)
    assert rates[24] < 0.2e-2


def test_first_signal_requests_a_stop_and_second_aborts():
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN under nohup / a background job
    with loop.stop_requests() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop[0] is True
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_runs_in_one_process_each_train_with_their_own_precision(tiny_overrides, tmp_path):
    """accelerate keeps its first Accelerator's settings for the whole process (and refuses another precision): a
    bf16 run between two fp32 runs must run in bf16 itself, and the second fp32 run land where the first did."""
    import torch

    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN: CPU bf16 autocast unavailable")

    def eval_loss(name: str, precision: str) -> float:
        overrides = ["train.max_steps=6", f"train.mixed_precision={precision}", f"output_dir={tmp_path / name}"]
        return pretrain(load_config(None, [*tiny_overrides, *overrides]))["eval_loss"]

    fp32 = eval_loss("fp32", "no")
    assert eval_loss("bf16", "bf16") != pytest.approx(fp32, rel=1e-6, abs=0)  # 9e-6 apart after 6 steps
    assert eval_loss("fp32-again", "no") == pytest.approx(fp32, rel=1e-9, abs=0)


def test_a_compiled_mixed_precision_run_loads_its_graphs_from_the_autograd_cache(tiny_overrides, tmp_path):
    """Autocast stays outside the compiled training forward: inside it, AOTAutograd's cache would refuse the graph
    and every run would trace its forward and backward again (Qwen3: one graph, no breaks to split autocast off)."""
    if not loop.inductor_can_compile():
        pytest.skip("no C++ compiler for inductor")
    from torch._dynamo.utils import counters

    counters.clear()
    for run in (1, 2):
        overrides = ["model.arch=qwen3", "train.torch_compile=true", "train.mixed_precision=bf16",
                     "train.max_steps=2", f"output_dir={tmp_path / f'run{run}'}"]  # fmt: skip
        assert pretrain(load_config(None, [*tiny_overrides, *overrides]))["eval_loss"] < 7.5
    assert counters["aot_autograd"]["autograd_cache_bypass"] == 0
    assert counters["aot_autograd"]["autograd_cache_hit"] >= 1  # the second run at least


def test_each_run_sets_deterministic_algorithms_as_configured(tmp_path):
    """On by default without a GPU (a compiled CPU run repeats only with them); never inherited from an earlier run."""
    loop.build_accelerator(load_config(None, []).train, str(tmp_path), 1)
    assert torch.are_deterministic_algorithms_enabled() == (not torch.accelerator.is_available())
    loop.build_accelerator(load_config(None, ["train.deterministic=true"]).train, str(tmp_path), 1)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    loop.build_accelerator(load_config(None, ["train.deterministic=false"]).train, str(tmp_path), 1)
    assert not torch.are_deterministic_algorithms_enabled()


def test_evaluate_command_reproduces_the_final_validation(tiny_overrides, capsys):
    from pipelines.cli import main

    cfg = load_config(None, [*tiny_overrides, "train.max_steps=6", "train.eval_max_batches=null"])
    results = pretrain(cfg)
    main(["evaluate", cfg.output_dir])
    report = json.loads((Path(cfg.output_dir) / "eval_validation.json").read_text())
    assert report["loss"] == pytest.approx(results["eval_loss"], rel=1e-5)
    assert report["bits_per_byte"] == pytest.approx(results["eval_bits_per_byte"], rel=1e-5)
    assert report["tokens"] == results["eval_tokens"]


def test_time_budget_stops_evaluates_and_exports(tiny_overrides, tmp_path):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=100000", "train.max_runtime=3", "train.eval_steps=1000"])
    results = pretrain(cfg)
    assert 0 < results["step"] < 100000 and "eval_loss" in results  # stopped early, evaluated at the stop
    assert results["train_runtime"] < 30 and (Path(cfg.output_dir) / "final" / "config.json").is_file()


def test_a_time_budgeted_wsd_run_ends_on_a_finished_decay(tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.max_steps=100000", "train.max_runtime=4", "train.eval_steps=1000",
                             "train.save_steps=1000", "train.logging_steps=1", "optim.warmup_steps=2",
                             "optim.lr_scheduler_type=warmup_stable_decay", "optim.decay_fraction=0.25"])  # fmt: skip
    results = pretrain(cfg)
    logged = [r for r in read_metrics(Path(cfg.output_dir)) if "learning_rate" in r]
    rates, elapsed = [r["learning_rate"] for r in logged], [r["elapsed"] for r in logged]
    peak = cfg.optim.learning_rate
    decay_start = next(i for i, rate in enumerate(rates) if i > 2 and rate < peak)
    assert results["step"] == len(rates) < 100000 and rates[-1] == 0.0  # stopped on the decay's last step
    step_time = (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)
    # Nothing pauses the clock (no evaluation or checkpoint before the end), so the logged wall time is training time.
    # The decay starts at the step that finds 75% of the budget trained (logged a moment after that check).
    assert elapsed[decay_start - 1] >= 0.75 * 4 and elapsed[decay_start - 2] < 0.75 * 4 + step_time
    assert elapsed[-1] == pytest.approx(4, abs=max(3 * step_time, 0.4))  # for as many steps as the rest held
    assert all(a >= b for a, b in zip(rates[decay_start - 1 :], rates[decay_start:], strict=False))
