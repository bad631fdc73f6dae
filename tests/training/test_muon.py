"""`optim.name: muon` / `normuon`: which tensors Muon gets, NorMuon's step, exact resume, and 2-process equivalence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
)

from pipelines.config import ModelConfig, OptimConfig, load_config
from pipelines.models import ModelShape, build_model
from pipelines.pretrain import pretrain
from pipelines.training.optimizer import HIDDEN_MATRIX, Muon, MuonWithAdamW, build_optimizer
from tests.training.test_distributed import launch_two, losses

SHAPE = ModelShape(vocab_size=64, max_positions=32, bos_token_id=None, eos_token_id=1, pad_token_id=0)
ARCHS = [("gpt2", AutoModelForCausalLM), ("llama", AutoModelForCausalLM), ("qwen3", AutoModelForCausalLM),
         ("bert", AutoModelForMaskedLM),
         ("modernbert", AutoModelForMaskedLM), ("t5", AutoModelForSeq2SeqLM)]  # fmt: skip


@pytest.mark.parametrize(("arch", "auto_class"), ARCHS, ids=[a for a, _ in ARCHS])
def test_muon_gets_exactly_the_hidden_matrices(arch, auto_class):
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2), SHAPE, auto_class)
    optimizer = build_optimizer(model, OptimConfig(name="muon"))
    assert isinstance(optimizer, MuonWithAdamW)
    in_muon = {id(p) for g in optimizer.parts["muon"].param_groups for p in g["params"]}
    names = {id(p): name for name, p in model.named_parameters()}
    hidden = {id(p) for name, p in model.named_parameters() if p.dim() == 2 and HIDDEN_MATRIX.search(name)}
    assert in_muon == hidden and len(hidden) >= 4 * 2  # at least q/k/v/o-sized matrices in each of 2 blocks
    embedding = model.get_input_embeddings().weight
    assert id(embedding) not in in_muon
    assert all(p.dim() == 2 for g in optimizer.parts["muon"].param_groups for p in g["params"])
    in_adamw = [names[id(p)] for g in optimizer.parts["adamw"].param_groups for p in g["params"]]
    assert len(in_adamw) + len(in_muon) == len(names)  # every tensor in exactly one part
    assert optimizer.param_groups == optimizer.parts["muon"].param_groups + optimizer.parts["adamw"].param_groups


NO_BLOCKS = [("lstm_lm", AutoModelForCausalLM), ("textcnn", AutoModelForSequenceClassification)]


@pytest.mark.parametrize(("arch", "auto_class"), NO_BLOCKS)
def test_muon_on_a_model_without_transformer_blocks_is_plain_adamw(arch, auto_class):
    updates = {"num_labels": 2} if auto_class is AutoModelForSequenceClassification else {}
    model = build_model(ModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, num_filters=8), SHAPE,
                        auto_class, **updates)  # fmt: skip
    optimizer = build_optimizer(model, OptimConfig(name="muon"))
    assert type(optimizer) is torch.optim.AdamW
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["muon", "normuon"])
def test_a_muon_run_resumes_onto_the_same_losses(name, tiny_overrides, tmp_path):
    common = [*tiny_overrides, f"optim.name={name}", "train.max_steps=8", "train.eval_steps=4", "train.save_steps=4"]
    cfg = load_config(None, [*common, f"output_dir={tmp_path / 'run'}"])
    pretrain(cfg)
    run = Path(cfg.output_dir)
    straight = losses(run)
    assert straight[8] < straight[1] - 0.5  # it learns
    first_half = [line for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 4]
    for leftover in ("final", "checkpoints/step-00000008", "eval_results.json"):
        path = run / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    pretrain(cfg)  # resumes from the step-4 checkpoint: Muon's moments and the schedule come back with it
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert records[: len(first_half)] == first_half  # steps 1-4 kept as written (timings too): not trained again
    assert losses(run) == pytest.approx(straight, rel=1e-5, abs=1e-6)
    assert json.loads((run / "eval_results.json").read_text())["step"] == 8


def test_two_muon_processes_match_one(tiny_overrides, tmp_path):
    common = [*tiny_overrides, "optim.name=muon", "train.max_steps=6", "train.eval_steps=6", "train.save_steps=6"]
    pretrain(load_config(None, [*common, "train.per_device_train_batch_size=8", f"output_dir={tmp_path / 'one'}"]))
    launch_two("pretrain", [*common, "train.per_device_train_batch_size=4", f"output_dir={tmp_path / 'two'}"])
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(two) == list(range(1, 7))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=2e-3), step


@pytest.mark.parametrize("native_bfloat16", [False, True])
def test_orthogonalise_matches_torch_in_the_precision_the_cpu_computes_fast(native_bfloat16, monkeypatch):
    from pipelines.training import optimizer

    monkeypatch.setattr(optimizer, "cpu_computes_bfloat16", lambda: native_bfloat16)
    assert optimizer.newton_schulz_dtype(torch.device("cpu")) == (torch.bfloat16 if native_bfloat16 else torch.float32)
    grad = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    coefficients = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's defaults
    for g in (grad, grad.T):  # tall matrices iterate on the transpose
        update = optimizer.orthogonalise(g, coefficients, 5, 1e-7)
        assert update.dtype == torch.float32 and update.shape == g.shape
        singular = torch.linalg.svdvals(update)
        assert singular.min() > 0.6 and singular.max() < 1.3  # the quintic iteration's band around 1
        reference = torch.optim._muon._zeropower_via_newtonschulz(g, coefficients, 5, 1e-7)  # bfloat16 throughout
        # Both are bfloat16's iteration; float32 differs from it only by bfloat16's rounding (about 3% here).
        tolerance = 0.01 if native_bfloat16 else 0.05
        assert (update - reference).abs().max() < tolerance * reference.abs().max()


def test_matrices_of_one_shape_are_orthogonalised_together_as_each_alone():
    from pipelines.training.optimizer import orthogonalise

    grads = torch.randn(3, 48, 32, generator=torch.Generator().manual_seed(1))
    together = orthogonalise(grads, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    for grad, update in zip(grads, together, strict=True):
        torch.testing.assert_close(update, orthogonalise(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7))


def test_a_step_batches_tall_and_wide_matrices_of_every_group_and_moves_each_as_alone():
    # the queries are a group of their own; gate and up projections (96 x 32) are tall, down (32 x 96) wide: they are
    # iterated as one batch, and each must still take the step an optimizer of its own would give it
    model = build_model(ModelConfig(arch="qwen3", hidden_size=32, num_layers=2, num_heads=2), SHAPE,
                        AutoModelForCausalLM)  # fmt: skip
    muon = build_optimizer(model, OptimConfig(name="normuon", query_lr_scale=0.5)).parts["muon"]
    assert len(muon.param_groups) == 2
    generator = torch.Generator().manual_seed(0)
    stepped = [(p, g) for g in muon.param_groups for p in g["params"]]
    for param, _ in stepped:
        param.grad = torch.randn(param.shape, generator=generator)
    start = [param.detach().clone() for param, _ in stepped]
    for _ in range(2):  # the second step uses the momentum and NorMuon's running mean
        muon.step()
    together = [param.detach().clone() for param, _ in stepped]
    for (param, group), weights, expected in zip(stepped, start, together, strict=True):
        param.data.copy_(weights)
        settings = {k: group[k] for k in ("lr", "weight_decay", "momentum", "adjust_lr_fn")}
        alone = Muon([param], neuron_beta2=muon.neuron_beta2, **settings)
        for _ in range(2):
            alone.step()
        torch.testing.assert_close(param.detach(), expected)
        assert not torch.equal(param.detach(), weights)


def test_normuon_evens_out_the_neurons_and_keeps_muons_step_size():
    model = build_model(ModelConfig(arch="qwen3", hidden_size=32, num_layers=1, num_heads=2), SHAPE,
                        AutoModelForCausalLM)  # fmt: skip
    plain, evened = (build_optimizer(model, OptimConfig(name=name, weight_decay=0.0)) for name in ("muon", "normuon"))
    assert plain.parts["muon"].neuron_beta2 is None and evened.parts["muon"].neuron_beta2 == 0.95
    matrix = model.model.layers[0].mlp.gate_proj.weight  # 96 x 32: tall, so its orthogonal rows differ in size
    matrix.grad = torch.randn(matrix.shape, generator=torch.Generator().manual_seed(0))
    start = matrix.detach().clone()
    steps = {}
    for name, optimizer in (("muon", plain), ("normuon", evened)):
        optimizer.parts["muon"].step()
        steps[name] = matrix.detach() - start
        matrix.data.copy_(start)
    rows = steps["muon"].norm(dim=1)
    assert rows.max() > 1.5 * rows.min()  # Muon's step leaves the neurons uneven
    # First step: the running mean square is 0.05 x each row's own, so every row comes out the same size ...
    torch.testing.assert_close(steps["normuon"].norm(dim=1), torch.full_like(rows, rows.pow(2).mean().sqrt().item()))
    torch.testing.assert_close(steps["normuon"].norm(), steps["muon"].norm())  # ... and the whole step as Muon's
    moment = evened.parts["muon"].state[matrix]["neuron_second_moment"]
    orthogonal = -steps["muon"] / (plain.parts["muon"].param_groups[0]["lr"] * 0.2 * max(matrix.shape) ** 0.5)
    torch.testing.assert_close(moment, 0.05 * orthogonal.square().mean(1, keepdim=True))
