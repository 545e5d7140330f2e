"""scale: skylens pipelines on Ray Data, reader -> mapper -> writer (local Ray or a cluster).

* ``ingest_ray``: ``skylens index ... --ray [ADDRESS]``: files -> reader tasks -> an actor pool of
  embedders (the model loads once a worker) -> one idempotent LanceDB writer.
* ``map_batches``: any batch function (curate steps) over items, on Ray or in-process.
* ``ray_session``: a local Ray with N CPUs, or a cluster's address.

Ray is imported only when a pipeline runs (``pip install 'skylens[scale]'``).
"""

from skylens.scale.pipeline import batched, map_batches
from skylens.scale.runtime import ScaleError, ray_session


def __getattr__(name: str):
    if name == "ingest_ray":  # imported on first use: it pulls in the index and the models
        from skylens.scale.ingest import ingest_ray

        return ingest_ray
    raise AttributeError(f"module 'skylens.scale' has no attribute {name!r}")


__all__ = ["ScaleError", "batched", "ingest_ray", "map_batches", "ray_session"]
