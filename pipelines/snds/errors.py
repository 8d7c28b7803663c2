"""The one error type of the toolkit: the extract cannot be read as a whole."""


class ExtractError(ValueError):
    """A structural problem (missing table, bad header, unknown date format ...): one line, file and fault."""
