"""Write `final/`: safetensors weights, config, tokenizer, generation config and a model card."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.disk import format_bytes, free_bytes
from pipelines.errors import PipelineError
from pipelines.models.lora import is_lora


def export_final(accelerator, model, tokenizer, output_dir: str | Path, card: str, generation: dict | None = None,
                 files: dict[str, str] | None = None) -> Path:  # fmt: skip
    """Save a self-contained export that `transformers` Auto classes and `pipeline(...)` load with no code of ours.

    `generation` overrides the saved generation defaults (sampling, for a plain LM); `files` are extra
    text files (name → content) for the export. Written to `final.tmp/` and renamed, so a crash never
    leaves a half-written `final/`.
    """
    out = Path(output_dir)
    final, tmp = out / "final", out / "final.tmp"
    state_dict = accelerator.get_state_dict(model)  # every process: gathers sharded (FSDP/ZeRO-3) weights
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped = accelerator.unwrap_model(model)
        try:
            if is_lora(unwrapped):  # the adapters beside a merged plain model, which loads without peft
                unwrapped.save_pretrained(tmp / "adapter")
                unwrapped, state_dict = unwrapped.merge_and_unload(), None
            _set_generation_defaults(unwrapped, tokenizer, generation)
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            own = type(unwrapped).__module__.startswith("pipelines.")  # a baseline, registered by pipelines.models
            (tmp / "README.md").write_text(card + (f"\n{OWN_ARCHITECTURE_NOTE}\n" if own else ""))
            for name, content in (files or {}).items():
                (tmp / name).write_text(content)
        except Exception as err:  # noqa: BLE001 - a full disk surfaces as OSError, RuntimeError or SafetensorError
            shutil.rmtree(tmp, ignore_errors=True)
            raise PipelineError(_export_failed(final, err, state_dict or unwrapped.state_dict())) from None
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def _set_generation_defaults(model, tokenizer, generation: dict | None) -> None:
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        tokenizer.model_max_length = positions  # so pipelines truncate prompts to what the model accepts
    if model.can_generate():
        gen = model.generation_config
        gen.bos_token_id, gen.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        gen.pad_token_id = tokenizer.pad_token_id
        gen.do_sample, gen.top_k, gen.max_new_tokens = True, 50, 100
        gen.update(**(generation or {}))


def model_card(cfg, summary: str, facts: list[str], load: str, results: dict) -> str:
    """The export's README.md: what the model is, how it was trained, its validation figures, how to load it."""
    figures = ", ".join(f"{k.removeprefix('eval_').replace('_', ' ')} {v:.4f}" for k, v in results.items()
                        if k.startswith("eval_") and isinstance(v, float))  # fmt: skip
    size = (f"{results['parameters']:,} parameters; {results['step']} steps, {results['tokens_seen']:,} tokens, "
            f"{results['train_runtime']:.0f} s")  # fmt: skip
    lora = cfg.model.lora
    if lora is not None:
        targets = ", ".join(f"`{t}`" for t in lora.target_modules) if lora.target_modules else "the attention's q and v"
        facts = [*facts, f"**LoRA:** rank {lora.r}, alpha {lora.alpha:g} on {targets}; merged into these weights "
                         "(the adapters alone are in `adapter/`, for `peft`)"]  # fmt: skip
    lines = [f"# {Path(cfg.output_dir).name}", "", summary, "", *(f"- {fact}" for fact in facts), f"- **Size:** {size}"]
    lines += [f"- **Validation:** {figures}"] if figures else []
    return "\n".join([*lines, "", load, ""])


OWN_ARCHITECTURE_NOTE = (
    "This architecture is defined by the `pipelines` package, not by `transformers`: run `import pipelines` "
    "first, which registers it with the Auto classes and `pipeline()`."
)


def _export_failed(final: Path, err: Exception, state_dict: dict) -> str:
    needed = sum(t.numel() * t.element_size() for t in state_dict.values())
    cause = (str(err).strip() or type(err).__name__).splitlines()[0]
    return (
        f"could not write the export {final}: {cause}; the weights need about {format_bytes(needed)} and "
        f"{format_bytes(free_bytes(final.parent))} is free. The checkpoints are intact: free some space and run "
        "the same command to export again"
    )
