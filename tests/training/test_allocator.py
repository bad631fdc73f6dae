"""keep_freed_memory: on CPU, a training step reuses the previous step's memory instead of faulting it in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# AdamW steps of a small LM-shaped model (16 x 128 tokens, 2,048-way logits: 16 MiB), in a fresh process each time
# (the allocator setting is process-wide and cannot be undone). Prints the minor page faults of 20 steps after 10
# warm-up steps. On the 2-core VM, six pairs of processes: 49,000-288,000 with glibc's defaults (bursts of
# 4,000-20,000 pages in most steps), at most 4,099 with the memory kept (one 16 MiB block faulted in once).
STEPS = textwrap.dedent("""
    import resource, sys, torch
    from pipelines.training.allocator import keep_freed_memory
    if sys.argv[1] == "kept":
        assert keep_freed_memory()
    torch.manual_seed(0)
    layers = [torch.nn.Embedding(2048, 128)]
    for _ in range(4):  # MLP blocks: a step's activations are many blocks of 1-4 MiB
        layers += [torch.nn.Linear(128, 512), torch.nn.GELU(), torch.nn.Linear(512, 128)]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(128, 2048))
    optimizer = torch.optim.AdamW(model.parameters())
    ids = torch.randint(0, 2048, (16, 128))

    def step():
        torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(10):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_takes_the_page_faults_out_of_training_steps():
    # Without the setting the same 20 steps faulted 49,000 pages or more (plain, in the message): a no-op fails.
    kept = page_faults("kept")
    assert kept < 10_000, f"{kept} page faults in 20 steps with the memory kept, {page_faults('plain')} without"
