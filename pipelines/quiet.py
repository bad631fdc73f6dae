"""Known-harmless library warnings that would otherwise repeat on every run, silenced by exact message."""

from __future__ import annotations

import logging

HARMLESS = {
    # Tied input and output embeddings are one tensor: the checkpoint stores it once, and loading ties it again.
    "accelerate.utils.other": "Removed shared tensor",
    # GPT-2's head class name matches no loss name, so transformers falls back to the causal LM loss: the right one.
    "transformers.modeling_utils": "`loss_type=None`",
}


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # accelerate's logger puts "[RANK n] " in front
        return not message.startswith(self.prefix) and f"] {self.prefix}" not in message


def silence_harmless_warnings() -> None:
    """Install the filters (once per process; installing again changes nothing)."""
    for name, prefix in HARMLESS.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in target.filters):
            target.addFilter(_DropPrefix(prefix))
