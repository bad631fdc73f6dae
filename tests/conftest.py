"""Shared fixtures: offline mode, a tiny tokenizer trained once, and tiny run configs."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
"""Where `python -m pipelines fetch-data` puts the real data sets; tests that need them skip without it."""

# Style rule 9: 2 layers, hidden 32, vocab ≤ 512, length ≤ 32.
TINY = [
    "tokenizer.vocab_size=512",
    "data.max_documents=80",
    "data.block_size=32",
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "train.max_steps=30",
    "train.per_device_train_batch_size=8",
    "train.per_device_eval_batch_size=16",
    "train.logging_steps=1",
    "train.eval_steps=10",
    "train.save_steps=10",
    "train.eval_max_batches=4",
    "train.report_to=none",
    "optim.warmup_steps=5",
    "optim.learning_rate=1e-2",
]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A 512-token byte-level BPE trained on part of the built-in corpus, shared by the session."""
    from pipelines.config import load_config
    from pipelines.data.sources import load_raw_datasets
    from pipelines.tokenization import train_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    cfg = load_config(None, [*TINY, "tokenizer.max_training_documents=200"])
    tokenizer = train_tokenizer(cfg.tokenizer, load_raw_datasets(cfg.data, cfg.seed)["train"], "text")
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture
def tiny_overrides(tmp_path, tiny_tokenizer_dir) -> list[str]:
    """`--set` overrides for a tiny GPT run writing into this test's tmp_path."""
    return [*TINY, f"tokenizer.path={tiny_tokenizer_dir}", f"output_dir={tmp_path / 'run'}"]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each test starts from a clean slate, as a new command's process would: accelerate keeps its process-wide
    singletons (each run resets the settings, but not the process group a test may have set up), and torch its
    deterministic-algorithms switch."""
    yield
    import torch
    from accelerate.state import AcceleratorState, GradientState

    torch.use_deterministic_algorithms(False)

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def one_thread():
    """Small LSTM/CNN models run faster on one thread; on a busy 2-core machine, thread hand-offs between
    competing processes cost orders of magnitude more than the maths."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
