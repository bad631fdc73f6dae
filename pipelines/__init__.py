"""Pretrain, fine-tune, compare and generate with small transformer and baseline models."""

__version__ = "0.1.0"
