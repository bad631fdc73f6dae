"""Evaluation: language-model loss, perplexity and bits per byte (task metrics come with fine-tuning)."""

LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte")
"""Metrics where a smaller value is better (early stopping, `compare`'s ranking); higher is better for the rest."""
