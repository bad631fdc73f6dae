"""LoRA through `peft`: low-rank adapters on a pretrained transformer, merged back into a plain model at export."""

from __future__ import annotations

import importlib.util

from pipelines.config import LoraConfig
from pipelines.errors import PipelineError

TARGETS = {
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "modernbert": ["Wqkv"],
    "t5": ["q", "v"],
}
"""model_type → the modules adapted by default: the attention's query and value projections (Hu et al. 2021),
fused where the architecture fuses them."""

FRESH_MODULES = {"bert": ["pooler"]}
"""model_type → classifier modules that a masked-LM export lacks and that start untrained, so they train in full
(peft itself adds the heads, `classifier` and `score`)."""

TASK_TYPES = {
    "AutoModelForSequenceClassification": "SEQ_CLS",  # peft also trains the freshly built head in full
    "AutoModelForCausalLM": "CAUSAL_LM",
    "AutoModelForSeq2SeqLM": "SEQ_2_SEQ_LM",
}


def check_peft() -> None:
    """Refuse `model.lora` before any work when `peft` is missing."""
    if importlib.util.find_spec("peft") is None:
        raise PipelineError("model.lora needs the peft library: pip install peft (or pip install -e '.[lora]')")


def add_lora(model, cfg: LoraConfig, auto_class):
    """`model` wrapped with trainable adapters; every other pretrained weight is frozen."""
    import peft

    model_type = model.config.model_type
    targets = cfg.target_modules or TARGETS.get(model_type)
    if targets is None:
        raise PipelineError(f"model.lora has no default modules for a {model_type} model; set "
                            "model.lora.target_modules")  # fmt: skip
    task = TASK_TYPES[auto_class.__name__]
    fresh = FRESH_MODULES.get(model_type) if task == "SEQ_CLS" else None
    config = peft.LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(targets),
        task_type=task,
        modules_to_save=fresh,
        fan_in_fan_out=model_type == "gpt2",
    )  # fan_in_fan_out: GPT-2's Conv1D stores W transposed
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # e.g. a target module that the model does not have
        raise PipelineError(f"model.lora: {err}") from None


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")
