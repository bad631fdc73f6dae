"""The BERT-style WordPiece tokenizer: special tokens, [CLS]/[SEP] templates, segment ids, casing, save/load."""

from __future__ import annotations

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from pipelines.config import TokenizerConfig
from pipelines.tokenization import load_tokenizer, train_tokenizer

SUBJECTS = ["The cat", "A dog", "My friend", "The teacher", "Our neighbour"]
VERBS = ["reads a book", "walks to the park", "writes a letter", "cooks dinner"]
TIMES = ["in the morning.", "every evening.", "on Sundays."]
SENTENCES = [f"{s} {v} {t}" for s in SUBJECTS for v in VERBS for t in TIMES]

SPECIAL = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}

# lower-case ASCII built from the corpus's letters, including words never seen whole (split into ## pieces)
ROUND_TRIP = [
    "the cat reads a book in the morning.",
    "our neighbour walks to the park every evening.",
    "the teachers cooked dinners",
    "a friendly dog writes letters on sundays.",
    "cat",
]


def _train(lowercase: bool):
    corpus = Dataset.from_dict({"text": SENTENCES})
    return train_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=300, lowercase=lowercase), corpus, "text")


@pytest.fixture(scope="module")
def trained():
    return _train(lowercase=True)


@pytest.fixture(scope="module")
def saved_dir(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("wordpiece")
    trained.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tok(saved_dir):
    return AutoTokenizer.from_pretrained(str(saved_dir))


@pytest.fixture(scope="module")
def cased():
    return _train(lowercase=False)


def test_corpus_size():
    assert len(SENTENCES) == 60 == len(set(SENTENCES))


def test_vocab_bounded(tok):
    assert len(SPECIAL) < len(tok) <= 300


def test_special_tokens_present(tok):
    for role, token in SPECIAL.items():
        assert getattr(tok, role) == token
        token_id = getattr(tok, f"{role}_id")
        assert token_id is not None
        assert tok.convert_ids_to_tokens(token_id) == token
    ids = [getattr(tok, f"{role}_id") for role in SPECIAL]
    assert len(set(ids)) == len(SPECIAL)
    assert set(ids) <= set(tok.all_special_ids)
    assert tok.eos_token_id is None  # BERT separates with [SEP]; no EOS role


def test_saved_files_and_loader(saved_dir, tok):
    assert (saved_dir / "tokenizer.json").is_file()
    loaded = load_tokenizer(saved_dir)
    assert loaded.mask_token_id == tok.mask_token_id
    assert loaded(SENTENCES[0])["input_ids"] == tok(SENTENCES[0])["input_ids"]


def test_reload_matches_the_trained_object(trained, tok):
    assert len(trained) == len(tok)
    for text in SENTENCES[:5] + ROUND_TRIP:
        assert trained(text)["input_ids"] == tok(text)["input_ids"]
        assert trained(text, "a dog")["token_type_ids"] == tok(text, "a dog")["token_type_ids"]


@pytest.mark.xfail(
    strict=True,
    reason="BUG: wordpiece training is not reproducible: tokenizers' WordPieceTrainer orders the alphabet and "
    "tied merges by hash, so the same config and corpus give different vocabularies (byte_bpe is deterministic)",
)
def test_training_is_reproducible():
    first = _train(lowercase=True).get_vocab()
    assert all(_train(lowercase=True).get_vocab() == first for _ in range(2))


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_lower_case_ascii(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_round_trip_is_the_normalized_text(tok):
    # lowercase=True lower-cases and strips accents before tokenizing
    ids = tok("The Teacher COOKS dinner.")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "the teacher cooks dinner."
    assert tok("The Cat")["input_ids"] == tok("the cat")["input_ids"]
    assert tok("Cåt")["input_ids"] == tok("cat")["input_ids"]


def test_unseen_words_split_into_continuation_pieces(tok):
    pieces = tok.convert_ids_to_tokens(tok("teachers", add_special_tokens=False)["input_ids"])
    assert len(pieces) > 1
    assert not pieces[0].startswith("##")
    assert all(p.startswith("##") for p in pieces[1:])
    assert pieces[0] + "".join(p[2:] for p in pieces[1:]) == "teachers"


def test_unknown_characters_become_unk(tok):
    ids = tok("the Ω cat", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["the", "[UNK]", "cat"]


def test_single_sentence_template(tok):
    enc = tok("the cat reads a book.")
    plain = tok("the cat reads a book.", add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == [tok.cls_token_id, *plain, tok.sep_token_id]
    assert enc["token_type_ids"] == [0] * len(enc["input_ids"])
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens.count("[CLS]") == 1 and tokens.count("[SEP]") == 1


def test_pair_template_and_segment_ids(tok):
    a, b = "the cat reads.", "a dog walks to the park"
    enc = tok(a, b)
    ids_a = tok(a, add_special_tokens=False)["input_ids"]
    ids_b = tok(b, add_special_tokens=False)["input_ids"]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert enc["input_ids"] == [cls, *ids_a, sep, *ids_b, sep]
    assert enc["token_type_ids"] == [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    assert tok.decode(enc["input_ids"]) == f"[CLS] {a} [SEP] {b} [SEP]"


def test_batch_padding_uses_pad_token(tok):
    enc = tok(["cat", "the cat reads a book."], padding=True)
    short, long = enc["input_ids"]
    assert len(short) == len(long)
    assert short[3:] == [tok.pad_token_id] * (len(long) - 3)
    assert enc["attention_mask"][0] == [1, 1, 1] + [0] * (len(long) - 3)


def test_lowercase_false_keeps_case(cased, tmp_path):
    cased.save_pretrained(str(tmp_path))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    for tok in (cased, reloaded):
        upper = tok("The", add_special_tokens=False)["input_ids"]
        lower = tok("the", add_special_tokens=False)["input_ids"]
        assert upper != lower
        assert tok.convert_ids_to_tokens(upper)[0].startswith("T")
        text = "My friend reads a book on Sundays."
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
        assert tok.convert_ids_to_tokens(tok("Our our", add_special_tokens=False)["input_ids"])[0].startswith("O")
