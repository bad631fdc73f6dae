"""Load an exported run and generate: continuations from causal LMs and outputs of encoder-decoders (both
streamed), top-k fills from masked LMs; instruction prompts built with the export's saved templates."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    TextStreamer,
    pipeline,
    set_seed,
)

from pipelines.errors import PipelineError
from pipelines.models import new_token_limit, position_limit, resolve_export
from pipelines.objectives.instruct import format_prompts


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling controls, mirroring `transformers.GenerationConfig` names."""

    max_new_tokens: int = 100
    temperature: float = 0.8
    top_k: int | None = None
    """Sampling: keep the k likeliest tokens (None: 50). Fill-mask: candidates shown (None: 5)."""
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_return_sequences: int = 1
    greedy: bool = False
    num_beams: int = 1
    """Beam search width (more than 1: deterministic beam search instead of sampling)."""
    seed: int | None = None

    def __post_init__(self):
        problems = [
            (self.max_new_tokens < 1, "--max-new-tokens must be at least 1"),
            (self.num_return_sequences < 1, "--num-return-sequences must be at least 1"),
            (not self.greedy and self.temperature <= 0, "--temperature must be positive (or use --greedy)"),
            (self.top_k is not None and self.top_k < 1, "--top-k must be at least 1"),
            (self.top_p is not None and not 0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.repetition_penalty is not None and self.repetition_penalty <= 0, "--repetition-penalty must be > 0"),
            (self.greedy and self.num_return_sequences > 1, "--greedy gives one sequence; drop --num-return-sequences"),
            (self.num_beams < 1, "--num-beams must be at least 1"),
            (self.num_return_sequences > max(self.num_beams, 1) and self.num_beams > 1,
             "--num-return-sequences cannot exceed --num-beams"),
        ]  # fmt: skip
        for failed, message in problems:
            if failed:
                raise PipelineError(message)

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate`; greedy decoding ignores the sampling knobs."""
        kwargs = {"max_new_tokens": self.max_new_tokens, "num_return_sequences": self.num_return_sequences}
        if self.num_beams > 1:
            return kwargs | {"do_sample": False, "num_beams": self.num_beams, "top_k": None, "top_p": None,
                             "temperature": None}  # fmt: skip
        if self.greedy:
            return kwargs | {"do_sample": False, "top_k": None, "top_p": None, "temperature": None}
        top_k = 50 if self.top_k is None else self.top_k
        kwargs |= {"do_sample": True, "temperature": self.temperature, "top_k": top_k, "top_p": self.top_p}
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


def load_generator(path: str | Path) -> Callable[[str, GenerationSettings], None]:
    """A function that prints the model's answer to a prompt, chosen by the export's head."""
    export = resolve_export(path)
    config = AutoConfig.from_pretrained(str(export))
    architectures = config.architectures or []
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return partial(_print_fills, pipeline("fill-mask", model=str(export)))
    if config.is_encoder_decoder or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return partial(_print_continuations, *load_for_generation(export))
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return partial(_print_labels, pipeline("text-classification", model=str(export)))
    raise PipelineError(f"{export} holds a {', '.join(architectures)}, which does not generate text")


def instruction_prompt(path: str | Path, instruction: str | None = None, input_text: str | None = None,
                       fields: dict[str, str] | None = None) -> str:  # fmt: skip
    """The prompt a text-to-text export was trained on: a saved input template filled in, wrapped in the
    tokenizer's chat template when it has one (causal LMs).

    `fields` fill the template's fields by name (fields not given are left empty, as an absent optional field
    was in training). `instruction` and `input_text` fill the fields named `instruction` and `input`, or else
    the template's first and second fields, so they work whatever the data called them.
    """
    from pipelines.data.text_to_text import fill_template, template_fields

    export = resolve_export(path)
    saved = export / "prompt_templates.json"
    if not saved.is_file():
        raise PipelineError(f"{export} was not trained on templated data (no prompt_templates.json): pass a prompt")
    templates = list(json.loads(saved.read_text()).values())
    fields = dict(fields or {})
    usable = [t for t in templates if set(fields) <= set(template_fields(t))]
    if instruction is not None:  # a template that names an instruction is the one meant, when there is one
        usable.sort(key=lambda t: "instruction" not in template_fields(t))
    if not usable:
        listed = "; ".join(repr(t) for t in templates)
        raise PipelineError(f"no saved template of {export} has the field(s) {', '.join(fields)}: {listed}")
    template = usable[0]
    names = template_fields(template)
    for position, (key, value) in enumerate((("instruction", instruction), ("input", input_text))):
        if value is None:
            continue
        if key not in names and position >= len(names):
            raise PipelineError(f"the template {template!r} has no field for --{key}; use --field NAME=VALUE")
        fields.setdefault(key if key in names else names[position], value)
    content = fill_template(template, {name: fields.get(name, "") for name in names}).strip()
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    return content if tokenizer.chat_template is None else format_prompts(tokenizer, [content])[0]


def _print_continuations(model, tokenizer, prompt: str, settings: GenerationSettings, echo: bool = True) -> None:
    texts = generate(model, tokenizer, prompt, settings, stream=True, echo=echo)
    if settings.num_return_sequences == 1:
        print(flush=True)  # the streamer already printed the text
        return
    for i, text in enumerate(texts, 1):
        print(f"--- [{i}/{len(texts)}]\n{text}", flush=True)


def _print_fills(fill_mask, prompt: str, settings: GenerationSettings) -> None:
    mask = fill_mask.tokenizer.mask_token
    if mask not in prompt:
        raise PipelineError(f"a fill-mask prompt needs the mask token {mask}, e.g. 'the {mask} sat on the mat'")
    candidates = fill_mask(prompt, top_k=settings.top_k or 5)
    if prompt.count(mask) > 1:  # one list per mask: show each position's candidates
        candidates = [c for position in candidates for c in position]
    print(prompt)
    for candidate in candidates:
        print(f"  {candidate['score']:.4f}  {candidate['token_str']:<15} {candidate['sequence']}")


def _print_labels(classify, prompt: str, settings: GenerationSettings) -> None:
    print(prompt)
    for candidate in classify(prompt, top_k=settings.top_k or None):  # every label, likeliest first
        print(f"  {candidate['score']:.4f}  {candidate['label']}")


def load_for_generation(path: str | Path):
    """The exported causal or encoder-decoder model (in eval mode) and its tokenizer."""
    export = resolve_export(path)
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    auto_class = (
        AutoModelForSeq2SeqLM if AutoConfig.from_pretrained(str(export)).is_encoder_decoder else AutoModelForCausalLM
    )
    model = auto_class.from_pretrained(str(export))
    model.eval()
    return model, tokenizer


@torch.no_grad()
def generate(model, tokenizer, prompt: str, settings: GenerationSettings, stream: bool = False,
             echo: bool = True) -> list[str]:  # fmt: skip
    """Continuations of `prompt` (prompt included, for a causal LM) or an encoder-decoder's outputs; with
    `stream`, tokens are printed as they come, after the prompt when `echo`.

    Streaming needs a single sequence, so it is used only when `num_return_sequences` is 1.
    """
    if settings.seed is not None:
        set_seed(settings.seed)
    inputs = tokenizer(prompt, return_tensors="pt") if prompt else _bos_only(tokenizer)
    encoder_decoder = model.config.is_encoder_decoder
    max_len = position_limit(model.config)
    if max_len is not None and inputs["input_ids"].shape[1] >= max_len:
        raise PipelineError(f"the prompt has {inputs['input_ids'].shape[1]} tokens; this model reads at most {max_len}")
    streamer = None
    if stream and settings.num_return_sequences == 1 and settings.num_beams == 1:  # beams finish all at once
        if echo and not encoder_decoder:
            print(prompt, end="", flush=True)
        # The first call carries the prompt (causal) or the decoder's start token (encoder-decoder): skipped.
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = settings.generate_kwargs()
    kwargs["max_new_tokens"] = new_token_limit(model.config, inputs["input_ids"].shape[1], kwargs["max_new_tokens"])
    output = model.generate(**inputs, streamer=streamer, pad_token_id=tokenizer.pad_token_id, **kwargs)
    if stream and streamer is None and settings.num_return_sequences == 1:  # beam search: printed when done
        new = output[0] if encoder_decoder else output[0, inputs["input_ids"].shape[1] :]
        print(
            (prompt if echo and not encoder_decoder else "") + tokenizer.decode(new, skip_special_tokens=True), end=""
        )
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
