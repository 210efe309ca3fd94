"""One error family for everything a user can cause.

Messages are written for the user and fit on one line: the CLI prints them as they are, the app
shows them with ``st.error``, the job worker writes them into the job status. Tracebacks go to
logs only.
"""

from __future__ import annotations


class NoCodeMLError(Exception):
    """Base class: ``str(error)`` is a one-line message that says what to do next."""


class InvalidInput(NoCodeMLError):
    """The user's input (a file, an option) cannot be used as given."""


class InvalidImage(InvalidInput):
    """An image file is unreadable, unsupported, truncated or too large."""


class InvalidLabels(InvalidInput):
    """A LabelMe/COCO file is malformed or does not fit its image."""


class ModelError(NoCodeMLError):
    """A model folder is missing, incomplete or was made for another task."""


class Cancelled(NoCodeMLError):
    """Raised from a progress callback to stop a running job between steps."""
