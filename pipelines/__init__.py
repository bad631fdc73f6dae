"""Pretrain, fine-tune, compare and generate with small transformer and baseline models."""

import sys
from pathlib import Path

__version__ = "0.1.0"


def _cli_start() -> bool:
    """True while `python -m pipelines …` or the `pipelines` command is starting."""
    argv = getattr(sys, "orig_argv", [])
    as_module = "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["pipelines"]
    return as_module or Path(sys.argv[0]).name in ("pipelines", "pipelines.exe")


# The baseline architectures (TextCNN, LSTMs) are ours, not transformers': importing the models registers them
# with the Auto classes and `pipeline()`, so their exports load after a plain `import pipelines`. That import
# costs torch and transformers' model code (seconds), so the command line skips it here and its commands import
# the models when they need them: `--help` and argument errors answer at once.
if not _cli_start():
    import pipelines.models  # noqa: E402, F401
