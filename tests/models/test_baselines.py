"""The classic baselines: forward contract, learning, export round trip, attention masking and generation."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from pipelines.config import ModelConfig
from pipelines.models import MODELS, ModelShape, build_model
from pipelines.models.baselines import (
    BiLSTMForSequenceClassification,
    LSTMForCausalLM,
    LSTMSeq2SeqForConditionalGeneration,
    TextCNNForSequenceClassification,
)

PAD, BOS, EOS = 0, 1, 2
SHAPE = ModelShape(vocab_size=50, max_positions=32, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
AUTO = {
    "textcnn": AutoModelForSequenceClassification,
    "bilstm": AutoModelForSequenceClassification,
    "lstm_lm": AutoModelForCausalLM,
    "lstm_seq2seq": AutoModelForSeq2SeqLM,
}
CLASSES = {
    "textcnn": TextCNNForSequenceClassification,
    "bilstm": BiLSTMForSequenceClassification,
    "lstm_lm": LSTMForCausalLM,
    "lstm_seq2seq": LSTMSeq2SeqForConditionalGeneration,
}


def _tiny(arch: str, seed: int = 0, model_kw: dict | None = None, **config_updates):
    """A tiny model built through the registry, as a run would build it."""
    torch.manual_seed(seed)
    fields = {"hidden_size": 16, "num_layers": 2, "num_filters": 8, "kernel_sizes": [2, 3, 4]} | (model_kw or {})
    cfg = ModelConfig(arch=arch, **fields)
    if AUTO[arch] is AutoModelForSequenceClassification:
        config_updates.setdefault("num_labels", 3)
    return build_model(cfg, SHAPE, AUTO[arch], **config_updates)


def _padded(rows: list[list[int]], pad_left: bool = False) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    ids = [[PAD] * (width - len(r)) + r if pad_left else r + [PAD] * (width - len(r)) for r in rows]
    ids = torch.tensor(ids)
    return {"input_ids": ids, "attention_mask": (ids != PAD).long()}


def _random_rows(n: int, lengths: tuple[int, int], seed: int, low: int = 3, high: int = 50) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(low, high, (int(torch.randint(*lengths, (1,), generator=g)),), generator=g).tolist()
        for _ in range(n)
    ]


def _labels(rows: list[list[int]]) -> torch.Tensor:
    """Padded targets, -100 where there is no token."""
    width = max(map(len, rows))
    return torch.tensor([r + [-100] * (width - len(r)) for r in rows])


pytestmark = pytest.mark.usefixtures("one_thread")


class RecordingStreamer:
    """What `TextStreamer` is to `generate`: `put` gets the prompt, then each new token; `end` closes."""

    def __init__(self):
        self.tokens: list[int] = []
        self.ended = False

    def put(self, value: torch.Tensor) -> None:
        self.tokens.extend(value.flatten().tolist())

    def end(self) -> None:
        self.ended = True


def _train(model, batch: dict, steps: int, target_loss: float, lr: float = 1e-2) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch).loss
        if loss.item() < target_loss:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


# --------------------------------------------------------------------------- registry and forward contract


def test_registry_families_and_classes():
    families = {arch: MODELS.get(arch).family for arch in AUTO}
    assert families == {"textcnn": "classifier", "bilstm": "classifier", "lstm_lm": "causal", "lstm_seq2seq": "seq2seq"}
    for arch, cls in CLASSES.items():
        model = _tiny(arch)
        assert type(model) is cls
        assert model.config.vocab_size == 50 and model.config.pad_token_id == PAD
    assert _tiny("lstm_seq2seq").config.decoder_start_token_id == PAD  # T5's convention


def test_build_config_maps_model_fields():
    cfg = ModelConfig(arch="lstm_seq2seq", hidden_size=24, embedding_size=8, num_layers=1, num_decoder_layers=3)
    config = MODELS.get("lstm_seq2seq").build_config(cfg, SHAPE)
    assert (config.hidden_size, config.embedding_size, config.num_layers, config.num_decoder_layers) == (24, 8, 1, 3)
    assert (config.bos_token_id, config.eos_token_id, config.is_encoder_decoder) == (BOS, EOS, True)
    cnn = MODELS.get("textcnn").build_config(ModelConfig(arch="textcnn", hidden_size=16), SHAPE)
    assert (cnn.embedding_size, list(cnn.kernel_sizes), cnn.num_filters) == (16, [3, 4, 5], 100)
    lstm = MODELS.get("bilstm").build_config(ModelConfig(arch="bilstm", pooling="mean"), SHAPE)
    assert lstm.pooling == "mean"


@pytest.mark.parametrize(
    ("arch", "model_kw", "updates"),
    [
        ("textcnn", {}, {}),
        ("bilstm", {"pooling": "max"}, {}),
        ("bilstm", {"pooling": "mean"}, {}),
        ("bilstm", {"pooling": "last"}, {}),
        ("lstm_lm", {"embedding_size": 8}, {}),  # with the projection down to the embedding width
        ("lstm_lm", {"tie_word_embeddings": False}, {}),
        ("lstm_seq2seq", {"embedding_size": 8}, {"attention_type": "general"}),
        ("lstm_seq2seq", {}, {"attention_type": "dot"}),
        ("lstm_seq2seq", {}, {"attention_type": "bahdanau"}),
    ],
)
def test_forward_backward_reaches_every_parameter(arch, model_kw, updates):
    model = _tiny(arch, model_kw=model_kw, **updates)
    batch = _padded([[5, 6, 7, 8, 9], [10, 11]])  # the second row is shorter than the widest kernel
    if arch in ("textcnn", "bilstm"):
        batch |= {"labels": torch.tensor([0, 2]), "token_type_ids": torch.zeros_like(batch["input_ids"])}
        expected = (2, 3)
    elif arch == "lstm_lm":
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        expected = (2, 5, 50)
    else:
        batch["labels"] = _labels([[12, 13, 14, EOS], [15, EOS]])
        expected = (2, 4, 50)
    out = model(**batch)
    assert out.logits.shape == expected
    out.loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert torch.isfinite(out.loss)


def test_initialisation():
    for arch in ("bilstm", "lstm_lm", "lstm_seq2seq"):
        model = _tiny(arch)
        assert torch.count_nonzero(model.get_input_embeddings().weight[PAD]) == 0
        lstm = model.encoder.lstm if arch == "lstm_seq2seq" else model.lstm
        assert torch.all(lstm.bias_ih_l0[16:32] == 1) and torch.all(lstm.bias_ih_l0[:16] == 0)  # forget gate at 1
    lm = _tiny("lstm_lm")
    assert lm.lm_head.weight is lm.embed_tokens.weight


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize(
    ("arch", "pooling"), [("textcnn", "max"), ("bilstm", "max"), ("bilstm", "mean"), ("bilstm", "last")]
)
def test_classifier_ignores_padding(arch, pooling):
    model = _tiny(arch, model_kw={"pooling": pooling}).eval()
    sentence = [5, 6, 7, 8, 9, 10]
    with torch.no_grad():
        alone = model(**_padded([sentence])).logits
        right = model(**_padded([sentence, sentence + [11] * 5])).logits[0]
        left = model(**_padded([sentence, sentence + [11] * 5], pad_left=True)).logits[0]
    torch.testing.assert_close(right, alone[0])
    torch.testing.assert_close(left, alone[0])


def test_lm_ignores_left_padding_of_prompts():
    model = _tiny("lstm_lm").eval()
    with torch.no_grad():
        alone = model(**_padded([[5, 6, 7]])).logits[0, -1]
        batched = model(**_padded([[5, 6, 7], [8, 9, 10, 11, 12]], pad_left=True)).logits[0, -1]
    torch.testing.assert_close(batched, alone)


@pytest.mark.parametrize("attention_type", ["general", "dot", "bahdanau"])
def test_seq2seq_attention_is_a_distribution_over_real_source_tokens(attention_type):
    model = _tiny("lstm_seq2seq", attention_type=attention_type).eval()
    batch = _padded([[5, 6, 7, 8, 9], [10, 11]])
    with torch.no_grad():
        weights = model(**batch, labels=_labels([[12, 13, 14, EOS], [15, EOS]])).cross_attentions[0]
    assert weights.shape == (2, 4, 5)  # (B, T_dec, T_src)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 4))
    assert torch.all(weights[1, :, 2:] == 0)  # padding gets no weight
    assert torch.all(weights[1, :, :2] > 0)


def test_seq2seq_decoder_inputs_are_shifted_labels():
    model = _tiny("lstm_seq2seq")
    labels = torch.tensor([[12, 13, EOS], [15, EOS, -100]])
    shifted = model.prepare_decoder_input_ids_from_labels(labels)
    assert shifted.tolist() == [[PAD, 12, 13], [PAD, 15, EOS]]
    batch = _padded([[5, 6], [7, 8]])
    torch.testing.assert_close(model(**batch, labels=labels).logits, model(**batch, decoder_input_ids=shifted).logits)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("arch", ["textcnn", "bilstm"])
def test_classifier_fits_a_tiny_data_set(arch):
    model = _tiny(arch)
    rows = _random_rows(8, (2, 9), seed=1)
    labels = torch.tensor([i % 3 for i in range(8)])
    batch = _padded(rows) | {"labels": labels}
    _train(model, batch, steps=150, target_loss=0.01)
    with torch.no_grad():
        predictions = model(**_padded(rows)).logits.argmax(dim=-1)
    assert predictions.tolist() == labels.tolist()


def test_lm_fits_repeated_sequences():
    model = _tiny("lstm_lm", model_kw={"hidden_size": 32})
    rows = [[3 + i] + row for i, row in enumerate(_random_rows(4, (7, 8), seed=2, low=7))]  # distinct first tokens
    batch = _padded(rows)
    batch["labels"] = batch["input_ids"].clone()
    assert _train(model, batch, steps=300, target_loss=0.05) < 0.1


@pytest.mark.parametrize("attention_type", ["general", "dot", "bahdanau"])
def test_seq2seq_learns_to_reverse(attention_type):
    model = _tiny("lstm_seq2seq", model_kw={"hidden_size": 32}, attention_type=attention_type)
    sources = _random_rows(8, (3, 6), seed=3, low=3, high=13)
    targets = [row[::-1] + [EOS] for row in sources]
    batch = _padded(sources) | {"labels": _labels(targets)}
    _train(model, batch, steps=300, target_loss=0.01)
    with torch.no_grad():
        out = model.generate(**_padded(sources), max_new_tokens=7, do_sample=False)
    for row, target in zip(out.tolist(), targets, strict=True):
        assert row[0] == PAD and row[1 : 1 + len(target)] == target


# --------------------------------------------------------------------------- export round trip


@pytest.mark.parametrize("arch", list(AUTO))
def test_save_and_load_with_auto_class(arch, tmp_path):
    model = _tiny(arch).eval()
    batch = _padded([[5, 6, 7, 8], [9, 10]])
    if arch == "lstm_seq2seq":
        batch["decoder_input_ids"] = _padded([[PAD, 11, 12], [PAD, 13, 14]])["input_ids"]
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    loaded = AUTO[arch].from_pretrained(tmp_path)
    assert type(loaded) is CLASSES[arch] and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    if arch in ("lstm_lm", "lstm_seq2seq"):
        assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight


# --------------------------------------------------------------------------- generation


def test_seq2seq_generates_greedy_and_beam():
    model = _tiny("lstm_seq2seq").eval()
    assert model.can_generate() and model.generation_config.decoder_start_token_id == PAD
    assert hasattr(model.get_encoder()(**_padded([[5, 6]])), "last_hidden_state")
    batch = _padded([[5, 6, 7, 8], [9, 10]])
    greedy = model.generate(**batch, max_new_tokens=5, do_sample=False)
    beam = model.generate(**batch, max_new_tokens=5, num_beams=3)
    for out in (greedy, beam):
        assert out.shape[0] == 2 and 2 <= out.shape[1] <= 6 and torch.all(out[:, 0] == PAD)
    streamer = RecordingStreamer()
    streamed = model.generate(**_padded([[5, 6, 7]]), max_new_tokens=5, do_sample=False, streamer=streamer)
    assert streamer.ended and streamer.tokens == streamed[0].tolist()
    # Each step re-reads every decoder input, so asking for a cache changes nothing.
    torch.testing.assert_close(model.generate(**batch, max_new_tokens=5, do_sample=False, use_cache=True), greedy)


@pytest.mark.parametrize("sample", [False, True])
def test_lm_generates_with_a_streamer(sample):
    model = _tiny("lstm_lm").eval()
    assert model.can_generate() and model.generation_config.eos_token_id == EOS
    prompt = _padded([[BOS, 5, 6]])
    streamer = RecordingStreamer()
    torch.manual_seed(0)
    out = model.generate(**prompt, max_new_tokens=6, do_sample=sample, top_k=5, streamer=streamer)
    assert out[0, :3].tolist() == [BOS, 5, 6] and 4 <= out.shape[1] <= 9
    assert streamer.ended and streamer.tokens == out[0].tolist()
