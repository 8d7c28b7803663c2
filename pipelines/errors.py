"""The one base class for errors the user must fix (bad input, missing upstream output, bad params).

The CLI prints any PipelineInputError as one line naming the stage and exits with code 2; every other
exception is a bug and keeps its traceback. Stage errors subclass it beside the builtin they always
were (ValueError, RuntimeError), so existing `except ValueError` callers keep working.
"""

from __future__ import annotations


class PipelineInputError(Exception):
    """Something outside the code is wrong: the message names the file, column or key to fix."""


class MissingInputError(PipelineInputError, FileNotFoundError):
    """An upstream stage's output is not there: the message names the file and the stage to run."""
