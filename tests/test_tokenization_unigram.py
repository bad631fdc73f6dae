"""The Unigram (T5) tokenizer kind: special tokens, sentinels, EOS template, and the committed artifact."""

from __future__ import annotations

from transformers import AutoTokenizer

from pipelines.config import load_config
from pipelines.data.sources import load_raw_datasets
from pipelines.objectives.seq2seq import sentinel_ids
from pipelines.tokenization import train_tokenizer
from tests.conftest import REPO


def test_unigram_trains_with_specials_and_sentinels(tmp_path):
    cfg = load_config(None, ["tokenizer.kind=unigram", "tokenizer.vocab_size=600", "tokenizer.num_sentinels=10",
                             "data.max_documents=60"])  # fmt: skip
    tokenizer = train_tokenizer(cfg.tokenizer, load_raw_datasets(cfg.data, cfg.seed)["train"], "text")
    tokenizer.save_pretrained(str(tmp_path))
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    assert sentinel_ids(loaded).tolist() == [loaded.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(10)]
    ids = loaded("Return the  value.\nNext")["input_ids"]
    assert ids[-1] == loaded.eos_token_id  # T5 inputs end with </s>
    assert loaded.decode(ids, skip_special_tokens=True) == "Return the value. Next"  # whitespace runs: one space
    # A sentinel in text stays one token, so span-corruption targets round-trip through the tokenizer.
    assert loaded.convert_tokens_to_ids("<extra_id_3>") in loaded("a <extra_id_3> b")["input_ids"]


def test_committed_t5_tokenizer_has_100_sentinels():
    tokenizer = AutoTokenizer.from_pretrained(str(REPO / "tokenizers" / "t5-builtin"))
    assert len(tokenizer) == 8192 and len(sentinel_ids(tokenizer)) == 100
