"""Load an exported run and generate text, streaming tokens as they are produced."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer, set_seed

from pipelines.errors import PipelineError


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling controls, mirroring `transformers.GenerationConfig` names."""

    max_new_tokens: int = 100
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_return_sequences: int = 1
    greedy: bool = False
    seed: int | None = None

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate`; greedy decoding ignores the sampling knobs."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": self.num_return_sequences}
        if self.greedy:
            return kwargs | {"do_sample": False, "top_k": None, "top_p": None, "temperature": None}
        kwargs |= {"do_sample": True, "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


def resolve_export(path: str | Path) -> Path:
    """Accept a run directory (uses its `final/`) or an export directory itself."""
    path = Path(path)
    for candidate in (path / "final", path):
        if (candidate / "config.json").is_file():
            return candidate
    if not path.exists():
        raise PipelineError(f"no such directory: {path}")
    raise PipelineError(f"{path} holds no exported model (no config.json in it or in {path / 'final'})")


def load_for_generation(path: str | Path):
    """The exported causal model (in eval mode) and its tokenizer."""
    export = resolve_export(path)
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    model = AutoModelForCausalLM.from_pretrained(str(export))
    model.eval()
    return model, tokenizer


@torch.no_grad()
def generate(model, tokenizer, prompt: str, settings: GenerationSettings, stream: bool = False) -> list[str]:
    """Continuations of `prompt` (prompt included); with `stream`, tokens are printed as they come.

    Streaming needs a single sequence, so it is used only when `num_return_sequences` is 1.
    """
    if settings.seed is not None:
        set_seed(settings.seed)
    inputs = tokenizer(prompt, return_tensors="pt") if prompt else _bos_only(tokenizer)
    max_len = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if max_len is not None and inputs["input_ids"].shape[1] >= max_len:
        raise PipelineError(f"the prompt has {inputs['input_ids'].shape[1]} tokens; this model reads at most {max_len}")
    streamer = None
    if stream and settings.num_return_sequences == 1:
        print(prompt, end="", flush=True)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = settings.generate_kwargs()
    if max_len is not None:  # learned position tables end at max_len: never generate past them
        kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], max_len - inputs["input_ids"].shape[1])
    output = model.generate(**inputs, streamer=streamer, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def _bos_only(tokenizer) -> dict[str, torch.Tensor]:
    """An empty prompt starts from the document separator, as every training document did."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([[start]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def read_prompts(prompts: list[str], prompt_file: str | None) -> list[str]:
    """Prompts from arguments, a file (one per line), or stdin (`-`, or nothing given and stdin piped)."""
    if prompt_file:
        try:
            return [line.rstrip("\n") for line in Path(prompt_file).read_text().splitlines() if line.strip()]
        except OSError as err:
            raise PipelineError(f"cannot read prompt file {prompt_file}: {err.strerror}") from None
    if prompts == ["-"] or (not prompts and not sys.stdin.isatty()):
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return prompts
