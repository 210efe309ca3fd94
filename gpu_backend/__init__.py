"""Job backend: run training and prediction as jobs, locally, in Docker or on AWS Batch.

- :mod:`gpu_backend.jobs` — :class:`~gpu_backend.jobs.JobClient`, the API of the app and CLI
- :mod:`gpu_backend.spec` — job spec / status files and the state machine
- :mod:`gpu_backend.store` — local folder and S3 stores (``create_store``, ``store_from_uri``)
- :mod:`gpu_backend.launchers` — ``local``, ``batch`` and ``queue`` launchers
- :mod:`gpu_backend.worker` — ``python -m gpu_backend.worker JOB_URI`` (and ``--serve``)
- :mod:`gpu_backend.settings` — :class:`~gpu_backend.settings.BackendSettings`

Nothing is imported here so that the Docker build can run :mod:`gpu_backend.weights` alone.
See ``docs/backend.md``.
"""
