"""The one error type of the toolkit: the extract cannot be read as a whole."""

from pipelines.errors import PipelineInputError


class ExtractError(PipelineInputError, ValueError):
    """A structural problem (missing table, bad header, unknown date format ...): one line, file and fault."""
