"""Errors of the job backend, in the project's one error family.

Every message is one line written for the user and says what to do next; the CLI prints it,
the app shows it with ``st.error``, the worker writes it into the job status.
"""

from __future__ import annotations

from pipelines.errors import InvalidInput, NoCodeMLError


class StoreError(NoCodeMLError):
    """The store refused an operation (missing bucket, access denied, unwritable folder)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached at all (server down, wrong endpoint, no credentials)."""


class KeyNotFound(StoreError):
    """A key (file) does not exist in the store."""


class JobNotFound(NoCodeMLError):
    """No job with this id exists in the store."""


class InvalidJobSpec(InvalidInput):
    """A job spec or status file is missing, corrupt or does not validate."""


class JobStateError(NoCodeMLError):
    """The job is in a state that does not allow the action (delete a running job...)."""


class LauncherError(NoCodeMLError):
    """A launcher could not start, cancel or describe a job (Batch refused, bad settings)."""
