"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem with the user's input (config, data, paths) rather than a bug in the code."""


class TrainingInterrupted(PipelineError):
    """Ctrl-C (or SIGTERM) stopped training after a checkpoint was saved; re-running resumes."""
