"""The one accelerate training loop, with checkpoints, resume and export; model- and objective-agnostic."""
