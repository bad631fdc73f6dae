"""`fetch-data`: download the public data sets the shipped configs read into `data/<set>/`, in their layout.

Each file comes from its original public source; files with a known checksum are verified, gzip files are
unpacked and zip members extracted. A file is written under a temporary name and renamed when complete, so an
interrupted fetch never leaves a half-written file that a later run would read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pipelines.errors import PipelineError

DATA_DIR = Path("data")
"""Where the shipped configs expect the data sets (relative to the repository root)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it comes from and the name it is stored under."""

    url: str
    name: str
    member: str | None = None
    """For a zip archive: the member to extract."""
    sha256: str | None = None
    """Of the stored file (after unpacking), where the source is pinned."""


@dataclass(frozen=True)
class DataSet:
    about: str
    licence: str
    files: tuple[RemoteFile, ...]


_GITHUB = "https://raw.githubusercontent.com"
_MULTI30K = f"{_GITHUB}/multi30k/dataset/master/data/task1/raw"
_MULTI30K_SHA256 = {
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
}
_GLUE_SST2 = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
_TREC = "https://cogcomp.seas.upenn.edu/Data/QA/QC"
_AG_NEWS = f"{_GITHUB}/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"

DATASETS = {
    "tinyshakespeare": DataSet(
        "Shakespeare's plays, 1.1 MB of text (karpathy/char-rnn)", "public-domain text",
        (RemoteFile(f"{_GITHUB}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt", "input.txt",
                    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),),
    ),
    "sst2": DataSet(
        "GLUE SST-2 sentiment: 67,349 training and 872 dev sentences", "no licence stated (GLUE; research use)",
        tuple(RemoteFile(_GLUE_SST2, name, member=f"SST-2/{name}") for name in ("train.tsv", "dev.tsv", "test.tsv")),
    ),
    "trec": DataSet(
        "TREC question classification (Li & Roth): 5,452 training and 500 test questions", "no licence stated",
        (RemoteFile(f"{_TREC}/train_5500.label", "train_5500.label",
                    sha256="9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
         RemoteFile(f"{_TREC}/TREC_10.label", "TREC_10.label",
                    sha256="033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e")),
    ),
    "ag_news": DataSet(
        "AG News topics: 7,600 test articles (configs/finetune/agnews-bert.yaml) and 120,000 training ones",
        "research and non-commercial use only (the data set's readme)",
        (RemoteFile(f"{_AG_NEWS}/test.csv", "test.csv",
                    sha256="521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699"),
         RemoteFile(f"{_AG_NEWS}/train.csv", "train.csv"), RemoteFile(f"{_AG_NEWS}/classes.txt", "classes.txt")),
    ),
    "alpaca": DataSet(
        "Stanford Alpaca: 52,002 instruction / input / output records", "CC BY-NC 4.0 (non-commercial)",
        (RemoteFile(f"{_GITHUB}/tatsu-lab/stanford_alpaca/main/alpaca_data.json", "alpaca_data.json",
                    sha256="2eddafc6b977608d778aaab8dfc7e50e547b3af9826dfb9e909d9fc362e4a419"),),
    ),
    "multi30k": DataSet(
        "Multi30K English-German caption translation: 29,000 / 1,014 / 1,000 pairs",
        "non-commercial research and education (the data set's README)",
        tuple(RemoteFile(f"{_MULTI30K}/{name}.gz", name, sha256=sha) for name, sha in _MULTI30K_SHA256.items()),
    ),
}  # fmt: skip


def fetch(names: list[str], target: Path = DATA_DIR, overwrite: bool = False) -> list[Path]:
    """Download the named sets (all when `names` is empty) into `target/<name>/`; returns the files written.
    A set whose files are all there is skipped unless `overwrite`."""
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise PipelineError(f"unknown data set(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    written = []
    for name in names or list(DATASETS):
        spec, folder = DATASETS[name], target / name
        if not overwrite and all((folder / f.name).is_file() for f in spec.files):
            print(f"{name}: already in {folder}")
            continue
        print(f"{name}: {spec.about}. Licence: {spec.licence}.", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        downloads: dict[str, bytes] = {}  # one download per URL (several zip members share one archive)
        for remote in spec.files:
            if remote.url not in downloads:
                downloads[remote.url] = _download(remote.url)
            written.append(_store(remote, downloads[remote.url], folder / remote.name))
    return written


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed http(s) sources; file:// in tests
            total = int(response.headers.get("Content-Length") or 0) or None
            buffer = io.BytesIO()
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
                while chunk := response.read(1 << 20):
                    buffer.write(chunk)
                    bar.update(len(chunk))
            return buffer.getvalue()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise PipelineError(f"cannot download {url} ({reason}): fetch-data needs network access") from None


def _store(remote: RemoteFile, payload: bytes, path: Path) -> Path:
    """Unpack `payload` as `remote` says, check it, and write it to `path` atomically."""
    try:
        if remote.member is not None:
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                payload = archive.read(remote.member)
        elif remote.url.endswith(".gz"):
            payload = gzip.decompress(payload)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as err:
        raise PipelineError(f"{remote.url} is not the archive expected ({err}); nothing was written") from None
    digest = hashlib.sha256(payload).hexdigest()
    if remote.sha256 is not None and digest != remote.sha256:
        raise PipelineError(
            f"{path.name} from {remote.url} has sha256 {digest}, not the known {remote.sha256}: the source changed "
            "or the download was damaged; it was not written"
        )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    print(f"  {path} ({len(payload):,} bytes)")
    return path


def missing_data_hint(path: str) -> str:
    """For a missing file under `data/<set>/` of a known set: the command that downloads it (else '')."""
    parts = Path(path).parts
    if len(parts) >= 2 and parts[0] == DATA_DIR.name and parts[1] in DATASETS:
        return f"; download it with: python -m pipelines fetch-data {parts[1]}"
    return ""
