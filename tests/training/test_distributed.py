"""Real 2-process runs under `accelerate launch` (gloo on CPU).

Same global batch on 1 and 2 processes gives the same losses; one export; a resumed run retraces its steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.pretrain import pretrain
from pipelines.training import loop
from tests.conftest import REPO


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def launch_two(command: str, sets: list[str], launcher: str = "cpu_2proc.yaml", *flags: str) -> None:
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(REPO / "configs" / "accelerate" / launcher), *flags,
           "-m", "pipelines", command, *sum((["--set", s] for s in sets), [])]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_match_one_process_and_resume_exactly(tiny_overrides, tmp_path):
    common = [*tiny_overrides, "train.max_steps=8", "train.eval_steps=4", "train.save_steps=4"]
    single = load_config(None, [*common, "train.per_device_train_batch_size=8", f"output_dir={tmp_path / 'one'}"])
    pretrain(single)

    two = tmp_path / "two"
    sets = [*common, "train.per_device_train_batch_size=4", f"output_dir={two}"]
    launch_two("pretrain", sets)

    # Only the main process writes: one record per step, one export, one checkpoint per save.
    assert sorted(losses(two)) == list(range(1, 9))
    assert (two / "final" / "model.safetensors").is_file()
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    # Data is sharded, not duplicated: the two halves of each global batch are the single run's batch.
    one_losses, two_losses = losses(tmp_path / "one"), losses(two)
    for step in one_losses:
        assert two_losses[step] == pytest.approx(one_losses[step], rel=2e-3), step
    assert json.loads((two / "eval_results.json").read_text())["tokens_seen"] == 8 * 8 * 32

    # A hard crash after the step-4 checkpoint: the rerun resumes there and retraces steps 5-8 exactly.
    for leftover in ("final", "checkpoints/step-00000008"):
        shutil.rmtree(two / leftover)
    (two / "eval_results.json").unlink()
    launch_two("pretrain", sets)
    assert losses(two) == pytest.approx(two_losses, rel=1e-6)
    assert (two / "final" / "model.safetensors").is_file()


def test_a_compiled_training_forward_matches_one_process_under_ddp(tiny_overrides, tmp_path):
    """The run compiles the model's own training forward, inside DDP's wrapper (not accelerate's compiled DDP)."""
    if not loop.inductor_can_compile():
        pytest.skip("no C++ compiler for inductor")
    common = [*tiny_overrides, "train.max_steps=6", "train.eval_steps=6", "train.torch_compile=true"]
    pretrain(load_config(None, [*common, "train.per_device_train_batch_size=8", f"output_dir={tmp_path / 'one'}"]))
    launch_two("pretrain", [*common, "train.per_device_train_batch_size=4", f"output_dir={tmp_path / 'two'}"])
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(two) == list(range(1, 7))
    assert all(two[step] == pytest.approx(one[step], rel=2e-3) for step in one)


def test_every_sample_is_seen_once_per_epoch_across_processes(tmp_path):
    examples, batch_size = 37, 4  # uneven on purpose: 37 = 4 full global batches of 2 x 4, plus 5 left over
    out = tmp_path / "seen.json"
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"),
           str(Path(__file__).with_name("sharding_probe.py")), str(out), str(examples), str(batch_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(out.read_text())
    # Training: no id twice in an epoch; only the tail that cannot fill a global batch is dropped.
    assert len(seen["train"]) == len(set(seen["train"])) == (examples // (2 * batch_size)) * 2 * batch_size
    # Evaluation: every example exactly once, without the duplicates accelerate pads the last batch with.
    assert sorted(seen["eval"]) == list(range(examples))


def test_streaming_two_processes_match_one_process(tiny_overrides, tmp_path):
    docs = [json.dumps({"text": f"document {i} " + "words of text " * (i % 7 + 3)}) + "\n" for i in range(300)]
    (tmp_path / "train.jsonl").write_text("".join(docs[:260]))
    (tmp_path / "valid.jsonl").write_text("".join(docs[260:]))
    common = [*tiny_overrides, "data.source=files", f"data.path={tmp_path / 'train.jsonl'}", "data.max_documents=null",
              f"data.validation_path={tmp_path / 'valid.jsonl'}", "data.streaming=true",
              "train.max_steps=6", "train.eval_steps=3", "train.save_steps=3"]  # fmt: skip
    pretrain(load_config(None, [*common, "train.per_device_train_batch_size=8", f"output_dir={tmp_path / 'one'}"]))
    two = tmp_path / "two"
    launch_two("pretrain", [*common, "train.per_device_train_batch_size=4", f"output_dir={two}"])
    assert sorted(losses(two)) == list(range(1, 7))
    one_losses = losses(tmp_path / "one")
    for step, value in losses(two).items():  # the main process reads each global batch and hands out halves
        assert value == pytest.approx(one_losses[step], rel=2e-3), step
    assert (two / "final" / "model.safetensors").is_file()


def test_fsdp_export_holds_the_full_weights(tiny_overrides, tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipelines.cli import main

    run = tmp_path / "fsdp"
    sets = [*tiny_overrides, "train.max_steps=4", "train.eval_steps=4", "train.save_steps=2",
            "train.eval_max_batches=null", f"output_dir={run}"]  # fmt: skip
    launch_two("pretrain", sets, "fsdp.yaml", "--num_processes", "2", "--mixed_precision", "no")
    weights = load_file(run / "final" / "model.safetensors")
    full = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(run / "final")).state_dict()
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in full.items() if k in weights}
    assert set(full) - set(weights) <= {"lm_head.weight"}  # tied to the token table, saved once
    # The gathered export is the trained model: scoring it again reproduces the run's final validation loss.
    main(["evaluate", str(run)])
    report = json.loads((run / "eval_validation.json").read_text())
    assert report["loss"] == pytest.approx(json.loads((run / "eval_results.json").read_text())["eval_loss"], rel=1e-4)


def test_two_processes_score_every_text_to_text_example_once(tmp_path):
    """Generation-based evaluation gathers each process's outputs and target texts without duplicates."""
    from tests.training.test_text_to_text_e2e import TINY_T5, reversal_overrides, write_reversal

    overrides = [o for o in reversal_overrides(tmp_path) if not o.startswith("data.validation_path")]
    _, val = write_reversal(tmp_path, n_train=1000, n_val=13)  # odd: accelerate pads the last batch
    sets = [*TINY_T5, *overrides, f"data.validation_path={val}", "objective.name=seq2seq", "train.max_steps=4",
            "train.eval_steps=4", "train.per_device_eval_batch_size=4"]  # fmt: skip
    launch_two("finetune", sets)
    lines = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["output"] for line in val.read_text().splitlines()]
    assert sorted(line["target"] for line in lines) == sorted(expected)
    assert sorted(line["input"] for line in lines) == sorted(f"reverse: {json.loads(r)['input']}"
                                                              for r in val.read_text().splitlines())  # fmt: skip


def test_fsdp_early_stopping_restores_the_best_weights_in_every_shard(tiny_overrides, tmp_path):
    """Each process keeps its own shards of the best weights; the export is the best evaluation's model.

    A rate of 0.5 held constant, unclipped, makes the evaluation loss bounce: the run stops at its first evaluation
    that is no better (a decaying rate let the tiny model improve at every one of 20 evaluations with some package
    versions, and the run never stopped)."""
    from pipelines.cli import main

    run = tmp_path / "fsdp-es"
    sets = [*tiny_overrides, "train.max_steps=40", "train.eval_steps=2", "train.save_steps=100",
            "train.early_stopping_patience=1", "optim.learning_rate=0.5", "optim.warmup_steps=0",
            "optim.lr_scheduler_type=constant_with_warmup", "optim.max_grad_norm=0", "train.eval_max_batches=null",
            f"output_dir={run}"]  # fmt: skip
    launch_two("pretrain", sets, "fsdp.yaml", "--num_processes", "2", "--mixed_precision", "no")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r["eval_loss"] for r in records if "eval_loss" in r]
    results = json.loads((run / "eval_results.json").read_text())
    assert results["step"] < 40 and evaluated.index(min(evaluated)) < len(evaluated) - 1  # stopped past its best
    assert results["eval_loss"] == pytest.approx(min(evaluated))
    main(["evaluate", str(run)])  # the gathered export holds the restored weights, not the last ones
    assert json.loads((run / "eval_validation.json").read_text())["loss"] == pytest.approx(min(evaluated), rel=1e-4)


def test_fsdp_generation_keeps_processes_in_step_when_their_outputs_differ_in_length(tmp_path, tiny_tokenizer_dir):
    """Generation-based evaluation under FSDP returns every prediction when the processes' prompts differ in length.

    Every forward pass of a sharded model gathers weights from all processes, so generation runs with
    `synced_gpus` there (a process that is done keeps stepping until the longest generation ends), as
    transformers requires. This run also completed with it switched off on CPU (gloo), so it guards the
    sharded generation path, not the hang itself."""
    # Batches of 2 alternate between the processes: short prompts on one, long on the other, so each is allowed a
    # different number of new tokens before the 64-position table ends.
    val = tmp_path / "val.jsonl"
    with val.open("w") as f:
        for i in range(8):
            words = ["red"] * (2 if i % 4 < 2 else 14)
            f.write(json.dumps({"instruction": "repeat", "input": " ".join(words), "output": "red"}) + "\n")
    train = tmp_path / "train.jsonl"
    train.write_text(val.read_text() * 20)
    sets = ["objective.name=instruct", "data.source=files", f"data.path={train}", f"data.validation_path={val}",
            'data.input_template="{instruction}\\n{input}"', 'data.target_template="{output}"', "data.block_size=64",
            f"tokenizer.path={tiny_tokenizer_dir}", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
            "objective.max_new_tokens=60", "objective.max_target_length=8", "objective.metrics=[exact_match]",
            "train.max_steps=2", "optim.learning_rate=1e-6",  # untrained: no early EOS, each generates to its limit
            "train.eval_steps=2", "train.per_device_train_batch_size=4", "train.per_device_eval_batch_size=2",
            "train.report_to=none", f"output_dir={tmp_path / 'run'}"]  # fmt: skip
    launch_two("finetune", sets, "fsdp.yaml", "--num_processes", "2", "--mixed_precision", "no")
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 8


def test_two_processes_end_a_time_budget_on_one_finished_decay(tiny_overrides, tmp_path):
    """Each process times its own steps; the decay they start together must have one length, or one process would
    wait forever for the other's next all-reduce."""
    run = tmp_path / "two"
    launch_two("pretrain", [*tiny_overrides, "train.max_steps=100000", "train.max_runtime=6", "train.eval_steps=1000",
                            "optim.lr_scheduler_type=warmup_stable_decay", "optim.warmup_steps=2",
                            f"output_dir={run}"])  # fmt: skip
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["learning_rate"] for r in records if "learning_rate" in r]
    assert rates[-1] == 0.0 and rates[-2] > 0.0  # the decay's last step, reached by both processes together
    assert (run / "final" / "model.safetensors").is_file()
