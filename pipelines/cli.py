"""`python -m pipelines <command>`: one function per subcommand; heavy imports happen inside them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipelines.errors import PipelineError, TrainingInterrupted
from pipelines.quiet import silence_harmless_warnings

QUICKSTART_DIR = "runs/quickstart"
QUICKSTART_PROMPTS = ("Return the", "This module provides", "The ")
# The model and optimizer of configs/gpt/tiny.yaml (the package's defaults are GPT-2 with AdamW): in 500 steps on
# the built-in corpus they reach 1.80 bits per byte against those defaults' 2.28 (docs/benchmarks.md, "The tiny GPT").
QUICKSTART_RECIPE = (
    "model.arch=qwen3",
    "optim.name=normuon",
    "optim.muon_momentum=0.9",
    "optim.learning_rate=1e-2",
    "optim.lr_scheduler_type=warmup_stable_decay",
    "optim.decay_fraction=0.3",
    "data.shift_blocks=true",
)


def _add_config_args(parser: argparse.ArgumentParser, config_help: str, example: str = "train.max_steps=100") -> None:
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable; every key: pipelines/config.py)",
    )  # fmt: skip


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser, "YAML run config (omit to start from the built-in defaults)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run or tokenizer")


def _load(args):
    from pipelines.config import load_config

    return load_config(args.config, args.overrides)


def cmd_train_tokenizer(args) -> None:
    """Train the config's tokenizer on the config's data and save it to `tokenizer.path`."""
    from pipelines.tokenization import train_and_save

    train_and_save(_load(args), args.overwrite)


def cmd_fetch_data(args) -> None:
    """Download the public data sets the shipped configs read (SST-2, TREC, AG News, tinyshakespeare, Alpaca,
    Multi30K) into data/<set>/, in the layout the configs expect; each set's licence is printed first."""
    from pipelines.data.fetch import fetch

    files = fetch(args.names, Path(args.to), args.overwrite)
    print(f"{len(files)} file(s) written under {args.to}" if files else "nothing to download")


def cmd_prepare(args) -> None:
    """Tokenize the config's data once into memory-mapped token files at `data.prepared_path`."""
    from pipelines.data.prepare import prepare_token_files
    from pipelines.dir_lock import lock_directory
    from pipelines.objectives import OBJECTIVES
    from pipelines.tokenization import load_tokenizer

    cfg = _load(args)
    if not cfg.data.prepared_path:
        raise PipelineError("set data.prepared_path to the directory the token files should go to")
    target = Path(cfg.data.prepared_path)
    objective = OBJECTIVES.get(cfg.objective.name)
    if objective.kind != "packed":
        raise PipelineError(f"objective '{cfg.objective.name}' trains on {objective.kind.replace('_', '-')} examples, "
                            "not token files")  # fmt: skip
    if cfg.data.streaming:
        raise PipelineError("prepare writes token files from an in-memory source: unset data.streaming")
    tokenizer = load_tokenizer(cfg.tokenizer.path)
    with lock_directory(target, "data.prepared_path"):  # one writer: two prepares would mix their token files
        if (target / "meta.json").exists() and not args.overwrite:
            raise PipelineError(f"{target} already holds prepared tokens; pass --overwrite to replace them")
        meta = prepare_token_files(cfg.data, cfg.seed, tokenizer, objective.packing(tokenizer, cfg), target)
    counts = ", ".join(f"{name}: {split['tokens']:,} tokens" for name, split in meta["splits"].items())
    print(f"prepared {counts} in {target}")


def cmd_pretrain(args) -> None:
    """Pretrain a model (resumes an interrupted run in the same output_dir)."""
    from pipelines.pretrain import pretrain

    cfg = _load(args)
    _print_summary(cfg.output_dir, pretrain(cfg, overwrite=args.overwrite))


def cmd_finetune(args) -> None:
    """Fine-tune on a labelled task (classification, or text-to-text pairs) from an export (`model.init_from`) or
    from scratch (resumes an interrupted run in the same output_dir)."""
    from pipelines.finetune import finetune

    cfg = _load(args)
    _print_summary(cfg.output_dir, finetune(cfg, overwrite=args.overwrite))


def cmd_evaluate(args) -> None:
    """Score an exported run on a data set (`--data FILE`) or its config's validation split; writes JSON."""
    from pipelines.config import load_config
    from pipelines.evaluate_export import evaluate_export

    saved = Path(args.run) / "config.yaml"
    if not Path(args.run).exists():
        raise PipelineError(f"no such run or export: {args.run}")
    if args.config is None and not saved.is_file():
        raise PipelineError(f"{args.run} has no config.yaml (an export copied on its own?); pass --config")
    cfg = load_config(args.config or saved, args.overrides)
    name = Path(args.data).stem if args.data else "validation"
    out = Path(args.output) if args.output else Path(args.run) / f"eval_{name}.json"
    results = evaluate_export(cfg, args.run, out, args.data)
    if _main_process():
        print(json.dumps(results, indent=2))
        print(f"written to {out}")


def cmd_generate(args) -> None:
    """Generate from an exported run (fills for masked LMs, label scores for classifiers): prompts from arguments,
    a file, stdin, -i, or --instruction/--input/--field for text-to-text models (built with the saved template)."""
    from transformers.utils import logging as hf_logging

    from pipelines.generation import GenerationSettings, instruction_prompt, load_generator, read_prompts

    hf_logging.disable_progress_bar()  # a weights-loading bar on every call is noise in a terminal tool
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, num_return_sequences=args.num_return_sequences,
        greedy=args.greedy, num_beams=args.num_beams, seed=args.seed,
    )  # fmt: skip
    if args.input is not None and args.instruction is None:
        raise PipelineError("--input goes with --instruction")
    fields = dict(_field(item) for item in args.fields)
    if args.instruction is not None or fields:  # the prompt comes from the export's template; print only the answer
        if args.prompts or args.prompt_file or args.interactive:
            raise PipelineError("--instruction/--field build the prompt: drop the other prompt arguments")
        prompt = instruction_prompt(args.run, args.instruction, args.input, fields)  # before the slow model load
        load_generator(args.run)(prompt, settings, echo=False)
        return
    if args.interactive:
        print("Type a prompt and press Enter; an empty line or Ctrl-D quits.", file=sys.stderr)
        prompts = _interactive_prompts()
    else:
        prompts = read_prompts(args.prompts, args.prompt_file)
        if not prompts:
            raise PipelineError("no prompt given: pass one, --prompt-file FILE, pipe prompts on stdin, or -i")
    generator = load_generator(args.run)
    for prompt in prompts:
        generator(prompt, settings)


def _field(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise PipelineError(f"--field expects NAME=VALUE (a field of the saved template), got {item!r}")
    return name.strip(), value


def _interactive_prompts():
    while True:
        try:
            prompt = input("> ")
        except EOFError:
            return
        if not prompt.strip():
            return
        yield prompt


def cmd_compare(args) -> None:
    """Compare finished runs: one Markdown table per task, plots against time and FLOPs, and JSON."""
    from pipelines.reporting import compare_runs

    report = compare_runs([Path(r) for r in args.runs], Path(args.out), strict=args.single_task)
    print((Path(args.out) / "report.md").read_text())
    print(f"{len(report['tasks'])} task(s); report, JSON and plots in {args.out}")


def cmd_quickstart(args) -> None:
    """Train a tokenizer and a tiny GPT on the built-in corpus, evaluate, export, and sample from it."""
    from pipelines.config import load_config
    from pipelines.generation import GenerationSettings, load_generator
    from pipelines.pretrain import pretrain
    from pipelines.tokenization import train_and_save

    base = Path(args.output_dir)
    recipe = QUICKSTART_RECIPE if args.config is None else ()
    paths = [f"output_dir={base / 'model'}", f"tokenizer.path={base / 'tokenizer'}"]
    cfg = load_config(args.config, [*recipe, *paths, *args.overrides])
    print(f"[1/3] tokenizer → {cfg.tokenizer.path}", flush=True)
    if (Path(cfg.tokenizer.path) / "tokenizer.json").exists() and not args.overwrite:
        print("      already trained; reusing it")
    else:
        train_and_save(cfg, overwrite=True)
    print(f"[2/3] pretraining a {cfg.model.arch} → {cfg.output_dir}", flush=True)
    if (Path(cfg.output_dir) / "final").exists() and not args.overwrite:
        print("      already trained; reusing it (pass --overwrite to train again)")
    else:
        _print_summary(cfg.output_dir, pretrain(cfg, overwrite=args.overwrite))
    print("[3/3] samples", flush=True)
    generator = load_generator(cfg.output_dir)
    for i, prompt in enumerate(QUICKSTART_PROMPTS, 1):
        print(f"--- sample {i}/{len(QUICKSTART_PROMPTS)}")
        generator(prompt, GenerationSettings(max_new_tokens=60, seed=0))
    print("---")
    print(f'Generate more with: python -m pipelines generate {cfg.output_dir} "your prompt"')


def _main_process() -> bool:
    """False on the other processes of an `accelerate launch`: one report per run, not one per process."""
    return int(os.environ.get("RANK", "0")) == 0


def _print_summary(output_dir: str, results: dict) -> None:
    if not _main_process():
        return
    line = f"done: {results['step']} steps, {results['tokens_seen']:,} tokens in {results['train_runtime']:.0f} s"
    shown = ("loss", "perplexity", "bits_per_byte", "token_accuracy", "accuracy", "f1", "f1_macro")
    figures = [f"{k} {results['eval_' + k]:.4f}" for k in shown if f"eval_{k}" in results]
    print(line + (f"; validation {', '.join(figures)}" if figures else ""))
    print(f"export: {Path(output_dir) / 'final'}")


def build_parser() -> argparse.ArgumentParser:
    """The `pipelines` argument parser with one subparser per command."""
    from pipelines.data.fetch import DATASETS

    parser = argparse.ArgumentParser(prog="pipelines", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    for name, func in (
        ("train-tokenizer", cmd_train_tokenizer),
        ("prepare", cmd_prepare),
        ("pretrain", cmd_pretrain),
        ("finetune", cmd_finetune),
    ):
        p = sub.add_parser(name, help=func.__doc__)
        _add_run_args(p)
        p.set_defaults(func=func)

    p = sub.add_parser("fetch-data", help=cmd_fetch_data.__doc__)
    p.add_argument("names", nargs="*", help="data sets to fetch (default: all): " + ", ".join(DATASETS))
    p.add_argument("--to", default="data", help="folder to put them in (default: data, where the configs look)")
    p.add_argument("--overwrite", action="store_true", help="download sets that are already there again")
    p.set_defaults(func=cmd_fetch_data)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    p.add_argument("run", help="run directory (its final/ is scored) or export directory")
    _add_config_args(p, "run config (default: the run's own config.yaml)", "train.eval_max_batches=10")
    p.add_argument("--data", help="score every example of this file, glob or directory (default: validation split)")
    p.add_argument("--output", help="where to write the JSON (default: <run>/eval_<data name>.json)")
    p.set_defaults(func=cmd_evaluate)

    _add_generate_parser(sub)

    p = sub.add_parser("compare", help=cmd_compare.__doc__)
    p.add_argument("runs", nargs="+", help="finished run directories (each with config.yaml and eval_results.json)")
    p.add_argument("--out", required=True, help="directory for report.md, report.json and the PNG plots")
    p.add_argument("--single-task", action="store_true", help="refuse runs of different tasks instead of grouping")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("quickstart", help=cmd_quickstart.__doc__)
    _add_run_args(p)
    p.add_argument("--output-dir", default=QUICKSTART_DIR, help="where the tokenizer and model go")
    p.set_defaults(func=cmd_quickstart)
    return parser


def _add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help=cmd_generate.__doc__)
    p.add_argument("run", help="run directory (its final/ is used) or export directory")
    p.add_argument("prompts", nargs="*", help="prompt(s); '-' reads prompts from stdin, one per line")
    p.add_argument("--prompt-file", help="read prompts from this file, one per line")
    p.add_argument("--interactive", "-i", action="store_true", help="read prompts interactively")
    p.add_argument("--max-new-tokens", type=int, default=100, help="stop after this many new tokens (default 100)")
    p.add_argument(
        "--temperature", type=float, default=0.8, help="sampling: below 1 sharper, above 1 more random (default 0.8)"
    )
    p.add_argument(
        "--top-k", type=int, default=None,
        help="sampling: keep the k likeliest (50); fill-mask: show k (5); classifier: show k (all)",
    )  # fmt: skip
    p.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="sampling: keep the likeliest tokens whose probabilities sum to p (default: off)",
    )
    p.add_argument(
        "--repetition-penalty",
        type=float,
        default=None,
        help="sampling: above 1 discourages repeating tokens, e.g. 1.2 (default: off)",
    )
    p.add_argument("--num-return-sequences", type=int, default=1, help="samples per prompt (default 1)")
    p.add_argument("--greedy", action="store_true", help="always pick the most likely token")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (no sampling)")
    p.add_argument(
        "--instruction",
        help="text-to-text models: build the prompt with the saved template, this text "
        "in its 'instruction' field (or its first field)",
    )
    p.add_argument("--input", help="with --instruction: the optional input, in the 'input' field (or the second)")
    p.add_argument(
        "--field",
        dest="fields",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill the saved template's field NAME (repeatable), e.g. --field question='Who wrote it?'",
    )
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.set_defaults(func=cmd_generate)


def main(argv: list[str] | None = None) -> None:
    """Entry point: clear one-line errors and exit codes instead of tracebacks for bad input."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # datasets.map forks; keep tokenizers quiet
    args = build_parser().parse_args(argv)
    silence_harmless_warnings()
    try:
        args.func(args)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        sys.exit(130)
    except PipelineError as err:
        _close_progress_bars()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _close_progress_bars() -> None:
    """End a progress bar an error cut short, so the message starts a line of its own instead of trailing it."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
