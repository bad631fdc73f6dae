"""Data: sources (builtin corpus, local files, hub), pure transforms, and dataset building."""
