"""Jobs that finished without running: the app's pages read them as they read real ones.

The tests that use these set ``NOCODE_ML_LAUNCHER=queue``, so a job the app submits waits in
the store for a worker service that never comes. :func:`finish_training` and
:func:`finish_prediction` then write what a worker would leave behind (a model description,
LabelMe results) and mark the job succeeded. Training and predicting for real is
``test_flow.py``'s and ``test_browser.py``'s job.
"""

from __future__ import annotations

import json

from gpu_backend.spec import STATUS_FILE, job_key
from streamlit_app import services


def succeed(job_id: str, results: dict[str, bytes]) -> None:
    """Write ``results`` (``{key under the job folder: content}``) and mark the job succeeded."""
    client = services.job_client()
    for key, data in results.items():
        client.store.write_bytes(job_key(job_id, key), data)
    status = client.status(job_id, reconcile=False).replace(
        state="succeeded", results=tuple(results)
    )
    client.store.write_bytes(job_key(job_id, STATUS_FILE), status.to_json())


def finish_training(job_id: str, task: str = "detect") -> None:
    """Mark a queued training job succeeded with a model a prediction can name."""
    model = {"task": task, "engine": "unet"}
    succeed(job_id, {"outputs/model/model.json": json.dumps(model).encode()})


def finish_prediction(project_id: str, job_id: str) -> None:
    """Mark a queued prediction job succeeded; each image's "found" objects are its labels."""
    store = services.project_store()
    (link,) = [link for link in store.get(project_id).jobs if link.job_id == job_id]
    names = link.images
    results = {
        f"outputs/predictions/{name}.json": json.dumps(
            store.labels(project_id, name).to_dict()
        ).encode()
        for name in names
    }
    succeed(job_id, results)


def trained_sample(app) -> tuple[str, str]:
    """Train the open project (the sample) with a finished "quick" job: (project id, job id)."""
    project_id = app.session_state["project_id"]
    job_id = services.submit_training(project_id, "quick")
    finish_training(job_id)
    return project_id, job_id
