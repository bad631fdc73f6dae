"""`fetch-data`: the layout conversion (plain, gzip, zip member), checksums, atomic writes and the offline error,
on local fixtures served through file:// URLs (no network)."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.data import fetch as fetch_module
from pipelines.data.fetch import DataSet, RemoteFile, fetch
from pipelines.errors import PipelineError
from tests.test_cli import assert_clean_error, run_cli


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sources(tmp_path, monkeypatch) -> dict[str, bytes]:
    """Three fake remote sets (a plain file, a gzip file, two zip members) registered as the only known sets."""
    remote = tmp_path / "remote"
    remote.mkdir()
    plain, german = b"first line\nsecond line\n", "Ein Hund läuft.\n".encode()
    (remote / "input.txt").write_bytes(plain)
    (remote / "train.de.gz").write_bytes(gzip.compress(german))
    with zipfile.ZipFile(remote / "SET.zip", "w") as archive:
        archive.writestr("SET/train.tsv", "sentence\tlabel\ngood\t1\n")
        archive.writestr("SET/dev.tsv", "sentence\tlabel\nbad\t0\n")
    url = remote.as_uri()
    monkeypatch.setattr(fetch_module, "DATASETS", {
        "plain": DataSet("a text", "public domain", (RemoteFile(f"{url}/input.txt", "input.txt", sha256=_sha(plain)),)),
        "packed": DataSet("gzip", "none stated", (RemoteFile(f"{url}/train.de.gz", "train.de", sha256=_sha(german)),)),
        "zipped": DataSet("zip", "none stated", (RemoteFile(f"{url}/SET.zip", "train.tsv", member="SET/train.tsv"),
                                                 RemoteFile(f"{url}/SET.zip", "dev.tsv", member="SET/dev.tsv"))),
    })  # fmt: skip
    return {"plain": plain, "german": german}


def test_every_set_lands_in_the_layout_the_configs_read(sources, tmp_path, capsys):
    written = fetch([], tmp_path / "data")
    data = tmp_path / "data"
    assert sorted(p.relative_to(data).as_posix() for p in written) == [
        "packed/train.de", "plain/input.txt", "zipped/dev.tsv", "zipped/train.tsv"]  # fmt: skip
    assert (data / "plain" / "input.txt").read_bytes() == sources["plain"]
    assert (data / "packed" / "train.de").read_bytes() == sources["german"]  # unpacked
    assert (data / "zipped" / "dev.tsv").read_text() == "sentence\tlabel\nbad\t0\n"
    assert not list(data.rglob("*.tmp"))
    out = capsys.readouterr().out
    assert "Licence: public domain" in out

    assert fetch(["plain"], data) == []  # already there: skipped
    assert "already in" in capsys.readouterr().out
    (data / "plain" / "input.txt").write_text("edited")
    assert fetch(["plain"], data, overwrite=True) and (data / "plain" / "input.txt").read_bytes() == sources["plain"]


def test_a_checksum_mismatch_writes_nothing(sources, tmp_path, monkeypatch):
    spec = fetch_module.DATASETS["plain"]
    bad = RemoteFile(spec.files[0].url, "input.txt", sha256="0" * 64)
    monkeypatch.setitem(fetch_module.DATASETS, "plain", DataSet(spec.about, spec.licence, (bad,)))
    with pytest.raises(PipelineError, match="has sha256 .* not the known 0{64}"):
        fetch(["plain"], tmp_path / "data")
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))


def test_offline_and_unknown_names_fail_with_one_line(sources, tmp_path, monkeypatch, capsys):
    unreachable = DataSet("x", "y", (RemoteFile("http://127.0.0.1:9/input.txt", "input.txt"),))  # nothing listens
    monkeypatch.setitem(fetch_module.DATASETS, "plain", unreachable)
    code, err = run_cli(capsys, "fetch-data", "plain", "--to", str(tmp_path / "data"))
    assert_clean_error(code, err, "cannot download http://127.0.0.1:9/input.txt", "needs network access")
    code, err = run_cli(capsys, "fetch-data", "imagenet", "--to", str(tmp_path / "data"))
    assert_clean_error(code, err, "unknown data set(s) imagenet", "known: plain, packed, zipped")


def test_the_cli_fetches_into_the_folder_given(sources, tmp_path, capsys):
    main(["fetch-data", "packed", "--to", str(tmp_path / "d")])
    assert (tmp_path / "d" / "packed" / "train.de").read_bytes() == sources["german"]
    assert "1 file(s) written" in capsys.readouterr().out


def test_a_missing_data_file_names_the_fetch_command(tmp_path, monkeypatch):
    from pipelines.config import DataConfig
    from pipelines.data.sources import load_raw_datasets

    monkeypatch.chdir(tmp_path)  # no data/ here, as in a fresh clone
    with pytest.raises(PipelineError, match=r"data file not found: data/sst2/train.tsv; .*fetch-data sst2"):
        load_raw_datasets(DataConfig(source="files", path="data/sst2/train.tsv"), 0)
    with pytest.raises(PipelineError, match=r"data file not found: data/multi30k/train.en; .*fetch-data multi30k"):
        load_raw_datasets(DataConfig(source="parallel", path="data/multi30k/train", column_names=["en", "de"]), 0)


def test_the_shipped_sets_cover_every_data_path_of_the_configs():
    """Every `data/<set>/<file>` a shipped config reads is a file some set of `fetch-data` writes."""
    import re

    repo = Path(__file__).parents[2]
    wanted = set()
    for config in (repo / "configs").rglob("*.yaml"):
        wanted |= set(re.findall(r"(?<![\w/.])data/([\w-]+)/([\w.-]+)", config.read_text()))
    provided = {(name, f.name) for name, spec in fetch_module.DATASETS.items() for f in spec.files}
    prefixes = {(name, f.name.rsplit(".", 1)[0]) for name, spec in fetch_module.DATASETS.items() for f in spec.files}
    missing = {w for w in wanted if w not in provided and w not in prefixes}  # parallel sources name a prefix
    assert wanted and not missing, missing
