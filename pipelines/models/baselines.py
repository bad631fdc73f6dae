"""Classic baselines as `transformers` models: TextCNN and BiLSTM classifiers, an LSTM language model and an
attentional LSTM encoder-decoder.

Each follows the forward contract `model(**batch)` → `.loss` (given labels) and `.logits`, saves with
`save_pretrained` (safetensors + config.json) and loads back with its Auto class once this module is imported.
Generation keeps no recurrent-state cache: every step re-reads the whole sequence, which costs O(T²) LSTM steps
but leaves beam reordering and streaming to `generate` with nothing of ours to keep in sync.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
)

from pipelines.config import ConfigError, ModelConfig
from pipelines.models import MODELS, ModelShape, ModelSpec

# --------------------------------------------------------------------------- configs


@strict
class TextCNNConfig(PreTrainedConfig):
    """Kim (2014): parallel convolutions of several widths over the embeddings, max-pooled over time."""

    model_type = "textcnn"

    vocab_size: int = 30522
    """Embedding rows."""
    embedding_size: int = 300
    """Width of the token embeddings."""
    kernel_sizes: list[int] | tuple[int, ...] = (3, 4, 5)
    """Widths (in tokens) of the parallel convolutions."""
    num_filters: int = 100
    """Feature maps per convolution width."""
    dropout: float | int = 0.5
    """Dropout on the pooled features."""
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None


@strict
class BiLSTMConfig(PreTrainedConfig):
    """A stacked bidirectional LSTM whose states are pooled into one sentence vector."""

    model_type = "bilstm"

    vocab_size: int = 30522
    """Embedding rows."""
    embedding_size: int = 300
    """Width of the token embeddings."""
    hidden_size: int = 256
    """LSTM width per direction (the sentence vector is twice as wide)."""
    num_layers: int = 1
    """Stacked LSTM layers."""
    dropout: float | int = 0.0
    """Dropout on the embeddings, between LSTM layers and on the sentence vector."""
    pooling: Literal["max", "mean", "last"] = "max"
    """Sentence vector: max or mean over the non-pad states, or the final forward and backward states."""
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None


@strict
class LSTMLMConfig(PreTrainedConfig):
    """A stacked LSTM language model (Zaremba et al., 2014) with optionally tied input and output embeddings."""

    model_type = "lstm_lm"

    vocab_size: int = 30522
    """Embedding rows."""
    embedding_size: int = 256
    """Width of the token embeddings (LSTM outputs are projected to it when `hidden_size` differs)."""
    hidden_size: int = 256
    """LSTM width."""
    num_layers: int = 2
    """Stacked LSTM layers."""
    dropout: float | int = 0.0
    """Dropout on the embeddings, between LSTM layers and before the output layer."""
    tie_word_embeddings: bool = True
    """Share the input embeddings with the output layer (Press & Wolf, 2017)."""
    use_cache: bool = False
    """No state cache: generation re-reads the whole sequence each step."""
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None


@strict
class LSTMSeq2SeqConfig(PreTrainedConfig):
    """A bidirectional LSTM encoder and an attentional LSTM decoder (Bahdanau et al., 2015; Luong et al., 2015)."""

    model_type = "lstm_seq2seq"

    vocab_size: int = 30522
    """Embedding rows, shared by source, target and (when tied) the output layer."""
    embedding_size: int = 256
    """Width of the token embeddings."""
    hidden_size: int = 256
    """Decoder LSTM width; the encoder has this width per direction."""
    num_layers: int = 1
    """Encoder LSTM layers."""
    num_decoder_layers: int | None = None
    """Decoder LSTM layers (None: `num_layers`)."""
    attention_type: Literal["general", "dot", "bahdanau"] = "general"
    """Score of a decoder state against an encoder state: Luong `general`/`dot` or Bahdanau's additive one."""
    dropout: float | int = 0.0
    """Dropout on the embeddings, between LSTM layers and before the output layer."""
    tie_word_embeddings: bool = True
    """Share the embeddings with the output layer."""
    is_encoder_decoder: bool = True
    use_cache: bool = False
    """No state cache: generation re-runs the decoder over all decoder inputs each step."""
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    """First decoder input (None: `pad_token_id`, as in T5)."""

    def __post_init__(self, **kwargs):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.pad_token_id
        super().__post_init__(**kwargs)


# --------------------------------------------------------------------------- shared pieces


def _mask(reference: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean (B, T) mask of real tokens; no attention mask means no padding."""
    if attention_mask is None:
        return torch.ones(reference.shape[:2], dtype=torch.bool, device=reference.device)
    return attention_mask.bool()


def _run_lstm(lstm: nn.LSTM, inputs: torch.Tensor, mask: torch.Tensor):
    """Run `lstm` (batch_first) over the real tokens of each row only, whether padding sits left or right.

    Rows are left-aligned (real tokens first, order kept) so that `pack_padded_sequence` skips the padding, then
    the outputs go back to their tokens' positions; pad positions get zeros.
    Returns outputs (B, T, D·H) and the final (h, c), each (L·D, B, H), taken after each row's real tokens.
    """
    lengths = mask.sum(dim=1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, T): real positions first
    aligned = inputs.gather(1, order[..., None].expand_as(inputs))
    # An all-pad row still needs length ≥ 1 to pack; it reads one pad step, whose outputs nobody uses.
    packed = pack_padded_sequence(aligned, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    outputs, state = lstm(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=mask.shape[1])
    restored = torch.zeros_like(outputs).scatter(1, order[..., None].expand_as(outputs), outputs)
    return restored * mask[..., None], state


def _lstm(config, input_size: int, num_layers: int, bidirectional: bool = False) -> nn.LSTM:
    # nn.LSTM applies dropout only between layers, and warns when there is no "between".
    dropout = config.dropout if num_layers > 1 else 0.0
    return nn.LSTM(
        input_size, config.hidden_size, num_layers, batch_first=True, dropout=dropout, bidirectional=bidirectional
    )


class BaselinePreTrainedModel(PreTrainedModel):
    """Shared initialisation for the baselines."""

    @torch.no_grad()
    def _init_weights(self, module):
        # The `init` functions skip tensors flagged as loaded from a checkpoint; a slice loses the flag, so the
        # two slice writes below check it on the whole tensor first.
        if isinstance(module, nn.Embedding):
            # Unit expected norm per vector: std 0.058 at width 300 (the classic U(-0.1, 0.1)), and tiny models
            # whose output layer is tied to it do not start with near-zero logits and stall.
            init.normal_(module.weight, std=module.embedding_dim**-0.5)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            hidden = module.hidden_size
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    init.xavier_uniform_(param)
                    continue
                init.zeros_(param)
                # Forget-gate bias 1 (Jozefowicz et al., 2015) keeps early gradients flowing through time. Gates are
                # ordered (i, f, g, o) and b_ih + b_hh are summed, so only b_ih gets it.
                if name.startswith("bias_ih") and not getattr(param, "_is_hf_initialized", False):
                    init.ones_(param[hidden : 2 * hidden])


# --------------------------------------------------------------------------- classifiers


class TextCNNForSequenceClassification(BaselinePreTrainedModel):
    """Kim (2014), CNN-rand: embeddings → convolutions of several widths → max over time → dropout → linear."""

    config_class = TextCNNConfig

    def __init__(self, config: TextCNNConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.convs = nn.ModuleList(nn.Conv1d(config.embedding_size, config.num_filters, k) for k in config.kernel_sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(len(config.kernel_sizes) * config.num_filters, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        """Logits (B, num_labels); other batch keys (`token_type_ids`) are ignored."""
        mask = _mask(input_ids, attention_mask)  # (B, T)
        length = input_ids.shape[1]
        x = self.embed_tokens(input_ids) * mask[..., None]  # (B, T, E): padding reads as zeros whatever its id
        # k_max - 1 zero steps at the end let every real token start a full window of every width, so inputs
        # shorter than the widest kernel work and the last tokens are seen by all widths.
        x = F.pad(x.transpose(1, 2), (0, max(self.config.kernel_sizes) - 1))  # (B, E, T + k_max - 1)
        # Only windows that start on a real token count: that set (and what they read) does not change with
        # extra padding. ReLU after the max equals max after ReLU, and turns an all-pad row's -inf into 0.
        pooled = [conv(x)[:, :, :length].masked_fill(~mask[:, None], float("-inf")).amax(dim=2) for conv in self.convs]
        logits = self.classifier(self.dropout(torch.relu(torch.cat(pooled, dim=1))))  # (B, num_labels)
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class BiLSTMForSequenceClassification(BaselinePreTrainedModel):
    """Embeddings → stacked bidirectional LSTM → max/mean/last pooling → dropout → linear."""

    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.lstm = _lstm(config, config.embedding_size, config.num_layers, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        """Logits (B, num_labels); other batch keys (`token_type_ids`) are ignored."""
        mask = _mask(input_ids, attention_mask)  # (B, T)
        states, (h_n, _) = _run_lstm(self.lstm, self.dropout(self.embed_tokens(input_ids)), mask)  # (B, T, 2H)
        if self.config.pooling == "max":
            sentence = states.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
        elif self.config.pooling == "mean":
            sentence = states.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)  # pad states are zeros
        else:  # last layer's forward state after the last token and backward state after the first
            sentence = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        logits = self.classifier(self.dropout(sentence))  # (B, num_labels)
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


# --------------------------------------------------------------------------- language model


class LSTMForCausalLM(BaselinePreTrainedModel, GenerationMixin):
    """Embeddings → stacked LSTM → projection to the embedding width → output layer (tied to the embeddings)."""

    config_class = LSTMLMConfig
    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}

    def __init__(self, config: LSTMLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.lstm = _lstm(config, config.embedding_size, config.num_layers)
        self.dropout = nn.Dropout(config.dropout)
        # Down to the embedding width, so the output layer has the embedding matrix's shape whether tied or not.
        project = config.hidden_size != config.embedding_size
        self.proj = nn.Linear(config.hidden_size, config.embedding_size, bias=False) if project else nn.Identity()
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        """Logits (B, T, V); labels are the inputs themselves (position t is scored on label t + 1)."""
        mask = _mask(input_ids, attention_mask)  # (B, T)
        states, _ = _run_lstm(self.lstm, self.dropout(self.embed_tokens(input_ids)), mask)  # (B, T, H)
        logits = self.lm_head(self.proj(self.dropout(states)))  # (B, T, V)
        loss = None if labels is None else self.loss_function(logits, labels, vocab_size=self.config.vocab_size)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        """The whole sequence every step (no state cache), whatever `use_cache` says."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # no key/value cache to fill, even when `generate` is asked for `use_cache=True`


# --------------------------------------------------------------------------- encoder-decoder


class LSTMEncoder(nn.Module):
    """Embeddings and a stacked bidirectional LSTM: what `generate` runs once per input (`get_encoder()`)."""

    main_input_name = "input_ids"  # `generate` reads it off the encoder

    def __init__(self, config: LSTMSeq2SeqConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.lstm = _lstm(config, config.embedding_size, config.num_layers, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids, attention_mask=None, **kwargs) -> BaseModelOutput:
        """States (B, S, 2H), zeros on padding."""
        states, _ = _run_lstm(self.lstm, self.dropout(self.embed_tokens(input_ids)), _mask(input_ids, attention_mask))
        return BaseModelOutput(last_hidden_state=states)


class Attention(nn.Module):
    """Scores decoder states against encoder states; the softmax over the source gives padding zero weight.

    `dot` and `general` are Luong et al. (2015); `bahdanau` is the additive score of Bahdanau et al. (2015), here
    applied to the current decoder state (Luong's arrangement) so that all decoder steps are scored at once.
    """

    def __init__(self, kind: str, query_size: int, memory_size: int):
        super().__init__()
        self.kind = kind
        if kind == "general":  # score = h_t · W_a h_s
            self.query = nn.Linear(query_size, memory_size, bias=False)
        elif kind == "bahdanau":  # score = v · tanh(W h_t + U h_s)
            self.query = nn.Linear(query_size, query_size, bias=False)
            self.key = nn.Linear(memory_size, query_size)
            self.score = nn.Linear(query_size, 1, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """query (B, T, H), memory (B, S, 2H), mask (B, S) → context (B, T, 2H), weights (B, T, S)."""
        if self.kind == "dot":  # a plain dot product needs equal widths: use the sum of the two directions
            forward_states, backward_states = memory.chunk(2, dim=-1)
            scores = query @ (forward_states + backward_states).transpose(1, 2)
        elif self.kind == "general":
            scores = self.query(query) @ memory.transpose(1, 2)
        else:
            hidden = torch.tanh(self.query(query)[:, :, None] + self.key(memory)[:, None])  # (B, T, S, H)
            scores = self.score(hidden).squeeze(-1)
        weights = scores.masked_fill(~mask[:, None], float("-inf")).softmax(dim=-1)
        return weights @ memory, weights


class LSTMSeq2SeqForConditionalGeneration(BaselinePreTrainedModel, GenerationMixin):
    """Bidirectional LSTM encoder; LSTM decoder started from the encoder through a bridge, with global attention.

    Source and target share one embedding table (one tokenizer), which the output layer reuses when tied.
    """

    config_class = LSTMSeq2SeqConfig
    _tied_weights_keys = {"lm_head.weight": "encoder.embed_tokens.weight"}

    def __init__(self, config: LSTMSeq2SeqConfig):
        super().__init__(config)
        hidden, layers = config.hidden_size, config.num_decoder_layers
        self.encoder = LSTMEncoder(config)
        self.bridge = nn.Linear(2 * hidden, layers * hidden)  # mean encoder state → initial h of every layer
        self.decoder = _lstm(config, config.embedding_size, layers)
        self.attention = Attention(config.attention_type, hidden, 2 * hidden)
        self.combine = nn.Linear(3 * hidden, hidden)  # Luong's attentional state tanh(W_c [c_t; h_t])
        self.dropout = nn.Dropout(config.dropout)
        project = hidden != config.embedding_size
        self.proj = nn.Linear(hidden, config.embedding_size, bias=False) if project else nn.Identity()
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs, as in T5: labels shifted right behind the start token, -100 read as padding."""
        start = labels.new_full((labels.shape[0], 1), self.config.decoder_start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        labels=None,
        encoder_outputs=None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """Logits (B, T, V) and attention weights `cross_attentions[0]` (B, T, S); labels line up with the logits."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)
        memory = encoder_outputs.last_hidden_state  # (B, S, 2H)
        source_mask = _mask(memory, attention_mask)  # (B, S)
        if decoder_input_ids is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)

        # Initial state from the mean encoder state, as in Nematus (Sennrich et al., 2017); cells start at zero.
        mean = (memory * source_mask[..., None]).sum(dim=1) / source_mask.sum(dim=1, keepdim=True).clamp(min=1)
        h0 = torch.tanh(self.bridge(mean)).view(memory.shape[0], self.config.num_decoder_layers, -1)
        h0 = h0.transpose(0, 1).contiguous()  # (L, B, H)
        # Decoder inputs are right-padded at most, so no packing: padding only follows the positions that count.
        states, _ = self.decoder(self.dropout(self.encoder.embed_tokens(decoder_input_ids)), (h0, torch.zeros_like(h0)))

        context, weights = self.attention(states, memory, source_mask)  # (B, T, 2H), (B, T, S)
        attentional = torch.tanh(self.combine(torch.cat([context, states], dim=-1)))  # (B, T, H)
        logits = self.lm_head(self.proj(self.dropout(attentional)))  # (B, T, V)
        loss = None
        if labels is not None:  # no shift: the decoder inputs are the shifted sequence
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return Seq2SeqLMOutput(loss=loss, logits=logits, cross_attentions=(weights,), encoder_last_hidden_state=memory)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, encoder_outputs=None, **kwargs):
        """All decoder inputs every step (no state cache); the encoder ran once, its states come along."""
        return {"decoder_input_ids": input_ids, "attention_mask": attention_mask, "encoder_outputs": encoder_outputs}

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # no key/value cache to fill, even when `generate` is asked for `use_cache=True`


# --------------------------------------------------------------------------- registration


def _shared_fields(cfg: ModelConfig, shape: ModelShape) -> dict:
    return {
        "vocab_size": shape.vocab_size,
        "embedding_size": cfg.embedding_size or cfg.hidden_size,
        "dropout": cfg.dropout,
        "pad_token_id": shape.pad_token_id,
        "bos_token_id": shape.bos_token_id,
        "eos_token_id": shape.eos_token_id,
    }


def textcnn_config(cfg: ModelConfig, shape: ModelShape) -> TextCNNConfig:
    """TextCNN: `kernel_sizes` × `num_filters` feature maps (no hidden size or layers)."""
    return TextCNNConfig(kernel_sizes=cfg.kernel_sizes, num_filters=cfg.num_filters, **_shared_fields(cfg, shape))


def bilstm_config(cfg: ModelConfig, shape: ModelShape) -> BiLSTMConfig:
    """BiLSTM classifier: `hidden_size` per direction, `num_layers` stacked, `pooling` for the sentence vector."""
    return BiLSTMConfig(
        hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, pooling=cfg.pooling, **_shared_fields(cfg, shape)
    )


def lstm_lm_config(cfg: ModelConfig, shape: ModelShape) -> LSTMLMConfig:
    """LSTM language model: `num_layers` stacked LSTMs of `hidden_size`."""
    return LSTMLMConfig(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        tie_word_embeddings=cfg.tie_word_embeddings,
        **_shared_fields(cfg, shape),
    )


def lstm_seq2seq_config(cfg: ModelConfig, shape: ModelShape) -> LSTMSeq2SeqConfig:
    """LSTM encoder-decoder: `num_layers` encoder and `num_decoder_layers` decoder layers of `hidden_size`."""
    return LSTMSeq2SeqConfig(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_decoder_layers or cfg.num_layers,
        tie_word_embeddings=cfg.tie_word_embeddings,
        attention_type=cfg.attention,
        **_shared_fields(cfg, shape),
    )


AutoConfig.register("textcnn", TextCNNConfig)
AutoConfig.register("bilstm", BiLSTMConfig)
AutoConfig.register("lstm_lm", LSTMLMConfig)
AutoConfig.register("lstm_seq2seq", LSTMSeq2SeqConfig)
AutoModelForSequenceClassification.register(TextCNNConfig, TextCNNForSequenceClassification)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification)
AutoModelForCausalLM.register(LSTMLMConfig, LSTMForCausalLM)
AutoModelForSeq2SeqLM.register(LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration)


def check_baseline(cfg: ModelConfig) -> None:
    """The baselines have no self-attention to choose a kernel for (lstm_seq2seq's is `model.attention`)."""
    if cfg.attn_implementation is not None:
        raise ConfigError(f"'model.attn_implementation' is for transformers, not the '{cfg.arch}' baseline; remove it")


MODELS.register("textcnn", ModelSpec(family="classifier", build_config=textcnn_config, check=check_baseline))
MODELS.register("bilstm", ModelSpec(family="classifier", build_config=bilstm_config, check=check_baseline))
MODELS.register("lstm_lm", ModelSpec(family="causal", build_config=lstm_lm_config, check=check_baseline))
MODELS.register("lstm_seq2seq", ModelSpec(family="seq2seq", build_config=lstm_seq2seq_config, check=check_baseline))
