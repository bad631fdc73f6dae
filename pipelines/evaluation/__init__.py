"""Evaluation: language-model loss, perplexity and bits per byte (task metrics come with fine-tuning)."""
