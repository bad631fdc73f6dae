"""Fault injection: hostile inputs, damaged files, full and read-only disks, concurrent runs, hard kills, Ctrl-C.

Every refusal is one `error:` line, exit code 2, no traceback, and leaves every file that existed before the
command as it was. Runs that crash (SIGKILL at random moments) resume onto exactly the uninterrupted losses.
Real processes come from a "zygote": one interpreter that imports the package once and forks a child per
command, so a subprocess costs a fork instead of four seconds of imports.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.cli import main
from pipelines.dir_lock import lock_directory
from tests.conftest import REPO, TINY
from tests.test_cli import assert_clean_error

RUN = ["train.max_steps=12", "train.save_steps=4", "train.eval_steps=4", "train.save_total_limit=3",
       "train.eval_max_batches=2"]  # fmt: skip
"""The reference run: checkpoints at steps 4, 8 and 12, so a kill or a damaged checkpoint has one to fall to."""

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on a busy machine; the zygote's children too


def sets(overrides: list[str]) -> list[str]:
    return sum((["--set", o] for o in overrides), [])


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI in this process; its exit code (0 when it returns normally) and its stderr."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)  # a run before this one in the same test
    GradientState._reset_state()
    try:
        main(list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def digest(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path → sha256): what a command must leave as it was."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def assert_kept(before: dict[str, str], root: Path) -> None:
    """Nothing that existed before was removed or changed."""
    after = digest(root)
    for name, sha in before.items():
        assert after.get(name) == sha, f"{name} was removed or changed"


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run directory whose saved config names its new place (so it is the same run, resumable)."""
    shutil.copytree(source, target)
    config = target / "config.yaml"
    config.write_text(config.read_text().replace(str(source), str(target)))
    return target


class Zygote:
    """One interpreter that has imported the package and forks a child per command (`python -m pipelines`
    semantics: stdout and stderr go to a log file, the exit status comes back)."""

    SOURCE = r"""
import json, os, sys, threading, time, traceback
from pipelines import cli, pretrain  # noqa: F401 - the slow imports, once for every child
def exit_when_orphaned(parent=os.getppid()):  # a test run killed without teardown must not leave us behind
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=exit_when_orphaned, daemon=True).start()
for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        print(os.waitstatus_to_exitcode(os.waitpid(request["wait"], 0)[1]), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(log, 1)
        os.dup2(log, 2)
        code = 0
        try:
            if "argv" in request:
                cli.main(request["argv"])
            else:
                exec(request["code"], {})
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", self.SOURCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO, env=env)  # fmt: skip

    def _ask(self, request: dict) -> int:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self, log: Path, argv: list[str] | None = None, code: str | None = None) -> int:
        """Fork a child running the CLI with `argv` (or Python `code`); returns its PID."""
        return self._ask({"log": str(log), **({"argv": argv} if argv is not None else {"code": code})})

    def wait(self, pid: int) -> int:
        """The child's exit code (negative: the signal that killed it)."""
        return self._ask({"wait": pid})

    def run(self, log: Path, argv: list[str]) -> int:
        return self.wait(self.start(log, argv))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.kill()  # nothing left to flush; an orderly interpreter shutdown would take seconds
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote():
    # One thread per child: tiny models run faster, and the reference and the resumed runs sum in the same order.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    z = Zygote(env)
    yield z
    z.close()


@pytest.fixture(scope="module")
def run_overrides(tiny_tokenizer_dir) -> list[str]:
    """The reference run's overrides, without `output_dir`."""
    return [*TINY, *RUN, f"tokenizer.path={tiny_tokenizer_dir}"]


@pytest.fixture(scope="module")
def reference(zygote, run_overrides, tmp_path_factory) -> Path:
    """An uninterrupted run in a child process: the losses every crashed and resumed run must reproduce."""
    run = tmp_path_factory.mktemp("reference") / "run"
    log = run.parent / "log.txt"
    assert zygote.run(log, ["pretrain", *sets([*run_overrides, f"output_dir={run}"])]) == 0, log.read_text()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f"step-{s:08d}" for s in (4, 8, 12)]
    return run


# --------------------------------------------------------------------------- the run directory


@pytest.mark.parametrize(
    "files",
    [
        {"config.yaml": "name: x\n", "notes.txt": "precious\n"},  # issue 13's data loss: config.yaml is no proof
        {"config.yaml": "SAME", "notes.txt": "precious\n"},  # even this run's own config, without run.json
        {"run.json": "{", "config.yaml": "SAME", "notes.txt": "precious\n"},  # a damaged marker proves nothing either
        {"run.json": '{"package": "other", "run_id": "1"}', "notes.txt": "precious\n"},
    ],
    ids=["foreign-config", "own-config-no-marker", "damaged-marker", "foreign-marker"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_that_is_not_provably_a_run_is_never_touched(tiny_overrides, tmp_path, capsys, files, overwrite):
    from pipelines.config import load_config, save_config

    run = tmp_path / "run"
    run.mkdir()
    for name, text in files.items():
        if text == "SAME":
            save_config(load_config(None, tiny_overrides), run / name)
        else:
            (run / name).write_text(text)
    before = digest(run)
    code, err = cli(capsys, "pretrain", *sets(tiny_overrides), *(["--overwrite"] if overwrite else []))
    assert_clean_error(code, err, str(run), "run.json")
    assert digest(run) == before


def test_a_run_is_marked_and_only_a_marked_run_is_overwritten(tiny_overrides, tmp_path, capsys):
    from pipelines.training.run_dir import package_version

    short = [*tiny_overrides, "train.max_steps=2", "train.eval_max_batches=1"]
    assert cli(capsys, "pretrain", *sets(short))[0] == 0
    run = tmp_path / "run"
    marker = json.loads((run / "run.json").read_text())
    assert marker["package"] == "pipelines" and marker["version"] == package_version() and marker["created"]
    (run / "final" / "extra.txt").write_text("the run's own file, replaced with the run")
    code, err = cli(capsys, "pretrain", *sets(short), "--overwrite")
    assert code == 0 and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["run_id"] != marker["run_id"]  # a new run
    assert not (run / "final" / "extra.txt").exists() and not (run / ".lock").exists()


# --------------------------------------------------------------------------- one writer per directory


def test_a_locked_output_dir_is_refused(tiny_overrides, tmp_path, capsys):
    run = tmp_path / "run"
    with lock_directory(run, "output_dir"):
        before = digest(run)
        code, err = cli(capsys, "pretrain", *sets(tiny_overrides))
        assert_clean_error(code, err, f"output_dir {run} is in use by another process (pid {os.getpid()})")
        assert digest(run) == before
    assert not run.exists()  # the lock made the directory, and took it away again


@pytest.mark.parametrize("command", ["train-tokenizer", "prepare"])
def test_tokenizer_and_prepare_targets_are_locked(tiny_overrides, tmp_path, capsys, command):
    target = tmp_path / "target"
    key = "tokenizer.path" if command == "train-tokenizer" else "data.prepared_path"
    with lock_directory(target, key):
        code, err = cli(capsys, command, *sets([*tiny_overrides, f"{key}={target}"]))
        assert_clean_error(code, err, f"{key} {target} is in use by another process")
        assert os.listdir(target) == [".lock"]


def test_a_stale_lock_of_a_killed_process_is_taken_over(tiny_overrides, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "tokenizer"
    target.mkdir()
    (target / ".lock").write_text(f"{dead.pid}\n")  # what `kill -9` leaves: the file, but no flock on it
    code, err = cli(capsys, "train-tokenizer", *sets([*tiny_overrides, f"tokenizer.path={target}",
                                                      "tokenizer.max_training_documents=40"]))  # fmt: skip
    assert code == 0, err
    assert (target / "tokenizer.json").is_file() and not (target / ".lock").exists()


def test_two_runs_started_at_once_into_one_directory(zygote, run_overrides, tmp_path):
    run = tmp_path / "run"
    argv = ["pretrain", *sets([*run_overrides, "train.max_steps=4", f"output_dir={run}"])]
    pids = [zygote.start(tmp_path / f"log{i}.txt", argv) for i in range(2)]
    codes = [zygote.wait(pid) for pid in pids]
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    assert sorted(codes) == [0, 2], logs
    refused = logs[codes.index(2)]
    assert_clean_error(2, refused, f"output_dir {run} is in use by another process")
    # Each step logged once (and evaluated at step 4): nothing interleaved.
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 4]


# --------------------------------------------------------------------------- disks: read-only, full


@pytest.fixture
def read_only_dir(tmp_path):
    """An existing, empty directory this process cannot write (root ignores permission bits: chattr +i)."""
    path = tmp_path / "run"
    path.mkdir()
    path.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        path.chmod(0o755)
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    yield path
    if immutable:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o755)


def test_a_read_only_output_dir_is_refused_before_any_work(tiny_overrides, read_only_dir, capsys, monkeypatch):
    import pipelines.tasks

    monkeypatch.setitem(pipelines.tasks.BUILDERS, "packed", _must_not_build)
    code, err = cli(capsys, "pretrain", *sets(tiny_overrides))
    assert_clean_error(code, err, f"output_dir {read_only_dir}", "not writable")
    assert os.listdir(read_only_dir) == []


def test_a_full_disk_is_refused_before_any_work(tiny_overrides, tmp_path, capsys, monkeypatch):
    import pipelines.disk
    import pipelines.tasks

    monkeypatch.setitem(pipelines.tasks.BUILDERS, "packed", _must_not_build)
    monkeypatch.setattr(pipelines.disk.shutil, "disk_usage", lambda path: SimpleNamespace(free=4096))
    code, err = cli(capsys, "pretrain", *sets(tiny_overrides))
    assert_clean_error(code, err, "not enough disk space for a new run", "4.1 kB free")
    assert not (tmp_path / "run").exists()


def _must_not_build(cfg, accelerator):
    raise AssertionError("the data and the model were built before the output_dir was checked")


def test_a_failed_checkpoint_save_keeps_the_previous_one(tiny_overrides, tmp_path, capsys, monkeypatch):
    from accelerate import Accelerator

    run, real_save, saved = tmp_path / "run", Accelerator.save_state, {}

    def disk_fills_up(self, output_dir=None, **kwargs):
        if saved:  # the second save: what a full disk leaves is part of a file, then ENOSPC
            saved["before"] = digest(run / "checkpoints" / "step-00000004")
            (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        saved["first"] = True
        return real_save(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", disk_fills_up)
    overrides = [*tiny_overrides, "train.max_steps=8", "train.save_steps=4", "train.eval_steps=100"]
    code, err = cli(capsys, "pretrain", *sets(overrides))
    assert_clean_error(code, err, "could not save checkpoint", "No space left on device", "needs about",
                       "checkpoint step-00000004 is intact")  # fmt: skip
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert_kept(saved["before"], run / "checkpoints" / "step-00000004")

    monkeypatch.setattr(Accelerator, "save_state", real_save)  # space freed: the same command resumes at step 4
    code, err = cli(capsys, "pretrain", *sets(overrides))
    assert code == 0, err
    assert sorted(losses(run)) == list(range(1, 9)) and (run / "final" / "model.safetensors").is_file()


def test_a_failed_export_leaves_no_half_written_final(tiny_overrides, tmp_path, capsys, monkeypatch):
    from transformers import PreTrainedModel

    def disk_full(self, save_directory, **kwargs):
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        (Path(save_directory) / "model.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    run = tmp_path / "run"
    overrides = [*tiny_overrides, "train.max_steps=4", "train.save_steps=4", "train.eval_max_batches=1"]
    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedModel, "save_pretrained", disk_full)
        code, err = cli(capsys, "pretrain", *sets(overrides))
    assert_clean_error(code, err, f"could not write the export {run / 'final'}", "No space left on device")
    assert not (run / "final").exists() and not (run / "final.tmp").exists()
    code, err = cli(capsys, "pretrain", *sets(overrides))  # resumes at step 4: evaluates and exports
    assert code == 0, err
    assert (run / "final" / "model.safetensors").is_file() and sorted(losses(run)) == [1, 2, 3, 4]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (needs root with CAP_SYS_ADMIN; skipped elsewhere): a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_really_full_disk_fails_the_save_cleanly(tiny_overrides, small_disk, capsys):
    # Leave room for the run's small files and one checkpoint (about 0.56 MB), not for a second one.
    free = shutil.disk_usage(small_disk).free
    (small_disk / "ballast").write_bytes(b"\0" * (free - (1 << 20) - (64 << 10)))
    run = small_disk / "run"
    overrides = [*tiny_overrides, f"output_dir={run}", "train.max_steps=8", "train.save_steps=4",
                 "train.eval_max_batches=1"]  # fmt: skip
    code, err = cli(capsys, "pretrain", *sets(overrides))
    assert_clean_error(code, err, "could not save checkpoint", "needs about", "checkpoint step-00000004 is intact")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000004"]
    from pipelines.training.checkpoint import checkpoint_problem

    assert checkpoint_problem(run / "checkpoints" / "step-00000004") is None


# --------------------------------------------------------------------------- damaged checkpoints


def crashed_copy(reference: Path, target: Path) -> Path:
    """The reference run as a crash after its last checkpoint would leave it: no export, no results."""
    run = copy_run(reference, target)
    shutil.rmtree(run / "final")
    (run / "eval_results.json").unlink()
    return run


@pytest.mark.parametrize("damage", ["model.safetensors", "optimizer.bin", "trainer_state.json"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(reference, tmp_path, capsys, caplog, damage):
    run = crashed_copy(reference, tmp_path / "run")
    newest = run / "checkpoints" / "step-00000012"
    truncate(newest / damage)
    older = digest(run / "checkpoints" / "step-00000008")
    code, err = cli(capsys, "pretrain", "--config", str(run / "config.yaml"))
    assert code == 0 and "Traceback" not in err, err
    assert f"checkpoint {newest} is damaged ({damage}" in caplog.text  # the warning names the broken one
    assert_kept(older, run / "checkpoints" / "step-00000008")
    resumed, uninterrupted = losses(run), losses(reference)
    assert sorted(resumed) == sorted(uninterrupted)
    assert [resumed[s] for s in range(9, 13)] == pytest.approx([uninterrupted[s] for s in range(9, 13)], rel=1e-5)


def test_no_loadable_checkpoint_is_one_clear_error(reference, tmp_path, capsys):
    run = crashed_copy(reference, tmp_path / "run")
    for checkpoint in (run / "checkpoints").iterdir():
        truncate(checkpoint / "model.safetensors")
    before = digest(run)
    code, err = cli(capsys, "pretrain", "--config", str(run / "config.yaml"))
    assert_clean_error(code, err, "no checkpoint in", "can be restored", "step-00000004: model.safetensors")
    assert digest(run) == before


def test_a_damaged_metrics_log_stops_resume(reference, tmp_path, capsys):
    run = crashed_copy(reference, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:10]  # a record cut in the middle of the file, not at its end
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = digest(run)
    code, err = cli(capsys, "pretrain", "--config", str(run / "config.yaml"))
    assert_clean_error(code, err, f"{run / 'metrics.jsonl'} line 3")
    assert digest(run) == before


# --------------------------------------------------------------------------- damaged inputs


def test_a_cut_off_tokenizer_is_named(tiny_overrides, tiny_tokenizer_dir, tmp_path, capsys):
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(tiny_tokenizer_dir, tokenizer)
    truncate(tokenizer / "tokenizer.json")
    before = digest(tokenizer)
    code, err = cli(capsys, "pretrain", *sets([*tiny_overrides, f"tokenizer.path={tokenizer}"]))
    assert_clean_error(code, err, f"{tokenizer / 'tokenizer.json'} is not valid JSON", "train the tokenizer again")
    assert digest(tokenizer) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["pretrain", "generate"])
def test_a_truncated_export_is_named(reference, tiny_overrides, tmp_path, capsys, command):
    export = tmp_path / "export"
    shutil.copytree(reference / "final", export)
    truncate(export / "model.safetensors")
    before = digest(export)
    argv = ["generate", str(export), "hello"] if command == "generate" else [
        "pretrain", *sets([*tiny_overrides, f"model.init_from={export}"])]  # fmt: skip
    code, err = cli(capsys, *argv)
    assert_clean_error(code, err, f"{export / 'model.safetensors'} is unreadable", "export it again")
    assert digest(export) == before and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def prepared(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """Token files made by `prepare` for the tiny config."""
    target = tmp_path_factory.mktemp("prepared") / "tokens"
    main(["prepare", *sets([*TINY, f"tokenizer.path={tiny_tokenizer_dir}", f"data.prepared_path={target}"])])
    return target


@pytest.mark.parametrize(("damage", "message"), [("train.bin", "train.bin has"), ("meta.json", "meta.json is damaged")])
def test_damaged_prepared_tokens_are_named(prepared, tiny_overrides, tmp_path, capsys, damage, message):
    tokens = tmp_path / "tokens"
    shutil.copytree(prepared, tokens)
    truncate(tokens / damage)
    before = digest(tokens)
    code, err = cli(capsys, "pretrain", *sets([*tiny_overrides, f"data.prepared_path={tokens}"]))
    assert_clean_error(code, err, f"{tokens}/{message}", "prepare --overwrite")
    assert digest(tokens) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("empty.txt", b"", ["empty.txt: the file is empty"]),
        ("latin1.txt", "first line\nsecond line\ncaf\xe9 au lait\n".encode("latin-1"),
         ["latin1.txt: line 3 is not valid utf-8 text (byte 0xe9)", "data.encoding"]),
        ("latin1.csv", "text\nfirst\ncaf\xe9\n".encode("latin-1"),
         ["latin1.csv: line 3 is not valid utf-8", "data.encoding"]),
        ("broken.jsonl", b'{"text": "one"}\n{"text": "two"}\n{"text": "three"\n{"text": "four"}\n',
         ["broken.jsonl: line 3 is not valid JSON"]),
    ],
)  # fmt: skip
def test_unreadable_data_names_the_file_the_cause_and_the_line(tiny_overrides, tmp_path, capsys, name, content,
                                                               fragments):  # fmt: skip
    data = tmp_path / name
    data.write_bytes(content)
    code, err = cli(capsys, "pretrain", *sets([*tiny_overrides, "data.source=files", f"data.path={data}"]))
    assert_clean_error(code, err, *fragments)
    assert data.read_bytes() == content and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- interrupts and hard kills

LONG_NATIVE_CALL = """
import hashlib
from pipelines.training.loop import stop_requests
with stop_requests():
    print("ready", flush=True)
    while True:  # each call runs for seconds in C, releasing the GIL: no bytecode boundary for a handler
        hashlib.pbkdf2_hmac("sha256", b"x", b"salt", 50_000_000)
"""


def test_a_second_ctrl_c_aborts_during_a_long_native_call(zygote, tmp_path):
    log = tmp_path / "log.txt"
    pid = zygote.start(log, code=LONG_NATIVE_CALL)
    _wait_for(lambda: log.exists() and "ready" in log.read_text(), pid)
    os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(pid, signal.SIGINT)
    second = time.monotonic()
    assert zygote.wait(pid) == 130
    assert time.monotonic() - second < 3.0  # the old handler waited for the call: both signals reached it as one
    assert "aborted by a second interrupt" in log.read_text() and "Traceback" not in log.read_text()


@pytest.mark.parametrize("seed", [1, 2, 9])  # killed after step 3, after step 2 (no checkpoint yet), after step 5
def test_a_run_killed_at_a_random_moment_resumes_onto_the_same_losses(zygote, reference, run_overrides, tmp_path,
                                                                      seed):  # fmt: skip
    rng = random.Random(seed)
    # `delay` s after step `logged` was logged; at least 5 of the 12 steps (and the export) are still to come, so
    # the kill lands mid-run even when the machine is busy (a kill after step 9 could miss a finished run).
    logged, delay = rng.randint(2, 7), rng.uniform(0.0, 0.1)
    run = tmp_path / "run"
    argv = ["pretrain", *sets([*run_overrides, f"output_dir={run}"])]
    pid = zygote.start(tmp_path / "killed.txt", argv)
    metrics = run / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and metrics.read_text().count('"loss"') >= logged, pid)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    assert zygote.wait(pid) == -signal.SIGKILL
    assert (run / ".lock").exists()  # left by the killed run; the flock died with it

    assert zygote.run(tmp_path / "resumed.txt", argv) == 0, (tmp_path / "resumed.txt").read_text()
    assert losses(run) == losses(reference)  # exactly: same process kind, same thread count
    assert not list((run / "checkpoints").glob("*.tmp")) and not (run / ".lock").exists()
    weights = "final/model.safetensors"
    assert (run / weights).read_bytes() == (reference / weights).read_bytes()  # byte-identical export


def _wait_for(condition, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child process never got there")
        time.sleep(0.02)
