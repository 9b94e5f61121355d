"""How the challenger is logged for a serving team: a signature with named input columns.

A tabular model's input example is a pandas DataFrame whose columns are the model's input names
(``rsft.features.feature_names``: sensors, rolling aggregates, one-hot levels); its signature
then lists those columns as ``double`` (float32 and float64 frames both pass MLflow's schema
check; the PyTorch pyfunc casts to float32). MLflow's default ``pt2`` export accepts only tensor
signatures, so such a model is logged in the ``pickle`` format with the ``rsft`` package as its
code (``code/rsft``): loading it needs no installed rsft. A text model reads hashed n-gram ids, an
int64 tensor; it keeps the tensor signature and the ``pt2`` export.

The state-dict checkpoint beside it (``checkpoint/model.pt``) is unchanged: warm starts and the
champion's scores read that, never this model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np


class _QuietPickleWarning(logging.Filter):
    """MLflow warns on every pickle-format save; rsft chose it (named columns need it), so the
    warning goes to the debug log once instead of every night's console."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Pickle or CloudPickle format" in record.getMessage():
            logging.getLogger(__name__).debug("mlflow: %s", record.getMessage())
            return False
        return True


_FILTER = _QuietPickleWarning()


def input_example(x: np.ndarray, names: list[str]) -> Any:
    """The input example of a model with inputs ``names``: a DataFrame with those columns when
    there is one name per column of ``x`` (tabular), else ``x`` itself (text ids)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names) or not np.issubdtype(x.dtype, np.floating):
        return x
    import pandas as pd

    return pd.DataFrame(x.astype(np.float32), columns=list(names))


def log_model_args(example: Any) -> dict[str, Any]:
    """Keyword arguments for ``mlflow.pytorch.log_model`` given the input example."""
    import pandas as pd

    if not isinstance(example, pd.DataFrame):
        return {"input_example": example}
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(inputs=Schema([ColSpec("double", str(c)) for c in example.columns]))
    if _FILTER not in logging.getLogger("mlflow.pytorch").filters:
        logging.getLogger("mlflow.pytorch").addFilter(_FILTER)
    return {"input_example": example.astype(np.float64), "signature": signature, "serialization_format": "pickle",
            "code_paths": [str(Path(__file__).resolve().parents[1])]}
