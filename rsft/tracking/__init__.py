"""Every MLflow call of rsft lives in this package.

- :mod:`rsft.tracking.registry` — the model registry: client, versions, aliases (``champion``,
  ``previous-champion``), the promotion policy (:func:`~rsft.tracking.registry.decide`), the
  audit trail, the inter-process registry lock.
- :mod:`rsft.tracking.runs` — the night's MLflow run: params, resolved config, lineage, dataset
  inputs, metrics per epoch, the adaptation search's candidate runs, the decision.
- :mod:`rsft.tracking.promotion` — register a challenger and gate it against the champion, or
  promote a version by hand, one process at a time (under the lock, the champion re-read inside).
- :mod:`rsft.tracking.store` — the embedded SQLite store, created atomically (a kill while MLflow
  creates its tables no longer bricks the state dir; a half-created store is replaced).
"""
