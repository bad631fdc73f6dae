"""keep_freed_memory: on CPU, a training step reuses the previous step's memory instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A few AdamW steps of a small LM-shaped model (16 x 128 tokens, 2,048-way logits), in a fresh process each time:
# the allocator setting is process-wide and cannot be undone. Prints the minor page faults per timed step.
STEPS = textwrap.dedent("""
    import resource, sys, torch
    from pipelines.training.allocator import keep_freed_memory
    if sys.argv[1] == "kept":
        assert keep_freed_memory()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(2048, 128), torch.nn.Linear(128, 512), torch.nn.GELU(),
                                torch.nn.Linear(512, 2048))
    optimizer = torch.optim.AdamW(model.parameters())
    ids = torch.randint(0, 2048, (16, 128))

    def step():
        torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
""")


def faults_per_step(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_takes_the_page_faults_out_of_a_training_step():
    plain, kept = faults_per_step("plain"), faults_per_step("kept")
    assert plain > 1000  # each step faults in its logits (4 MiB each) and activations again
    assert kept < plain / 10
