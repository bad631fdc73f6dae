"""Comparison tables and plots across finished runs."""

from pipelines.reporting.compare import compare_runs

__all__ = ["compare_runs"]
