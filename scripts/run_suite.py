"""Train and evaluate a matrix of runs from a suite file, then write the comparison report.

Each run is one `python -m pipelines <command> --config … --set …` in its own process, with its time
budget as `train.max_runtime`; a run that already finished (eval_results.json) is skipped, so an
interrupted suite continues where it stopped. The report comes from `python -m pipelines compare`.

    python scripts/run_suite.py configs/suites/baselines.yaml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", help="suite YAML: root, out, requires, runs [{name, command, config, budget, set}]")
    parser.add_argument("--only", nargs="*", help="run only these names (the report still covers every finished run)")
    args = parser.parse_args()
    suite = yaml.safe_load(Path(args.suite).read_text())
    unknown = set(args.only or []) - {run["name"] for run in suite["runs"]}
    if unknown:
        sys.exit(f"--only names runs the suite does not have: {', '.join(sorted(unknown))}")
    missing = [p for p in suite.get("requires", []) if not Path(p).exists()]
    if missing:
        sys.exit(f"this suite needs {', '.join(missing)} (python -m pipelines fetch-data downloads the data sets)")
    root = Path(suite["root"])
    for run in suite["runs"]:
        out = root / run["name"]
        overrides = [o.replace("{root}", str(root)) for o in run.get("set", [])]
        if run["command"] == "train-tokenizer":  # done when the tokenizer exists
            done = (Path(load_config(run["config"], overrides).tokenizer.path) / "tokenizer.json").exists()
        else:
            overrides = [f"output_dir={out}", *overrides]
            overrides += [f"train.max_runtime={run['budget']}"] if "budget" in run else []
            done = (out / "eval_results.json").exists()
        if done or (args.only and run["name"] not in args.only):
            continue
        command = [sys.executable, "-m", "pipelines", run["command"], "--config", run["config"]]
        command += [item for o in overrides for item in ("--set", o)]
        print("$", " ".join(command), flush=True)
        if subprocess.run(command).returncode:
            sys.exit(f"run '{run['name']}' failed; fix it and run the suite again (finished runs are kept)")
    finished = [str(root / r["name"]) for r in suite["runs"] if (root / r["name"] / "eval_results.json").exists()]
    finished += [str(p) for p in suite.get("include", []) if (Path(p) / "eval_results.json").exists()]
    subprocess.run([sys.executable, "-m", "pipelines", "compare", *finished, "--out", suite["out"]], check=True)


if __name__ == "__main__":
    main()
