"""How the challenger is logged for a serving team: a signature with named input columns.

A tabular model's input example is a pandas DataFrame whose columns are the model's input names
(``rsft.features.feature_names``: sensors, rolling aggregates, one-hot levels); its signature
then lists those columns as ``double`` (float32 and float64 frames both pass MLflow's schema
check; the PyTorch pyfunc casts to float32). MLflow's default ``pt2`` export accepts only tensor
signatures, so such a model is logged in the ``pickle`` format, its rsft classes (``rsft.models``)
pickled by value (:func:`classes_by_value`): loading it needs torch and no rsft — and no copy of
rsft's source beside every version (``code/rsft`` was 1,004,787 bytes in 76 files a version,
against ~33 KB of weights; a process that loaded it imported that copy as ``rsft``, shadowing an
installed one). The pickled code is the logging Python's bytecode: it loads in that Python minor
version (``python_env.yaml``); the checkpoint rebuilds it under any. A text model reads hashed n-gram ids, an int64 tensor; it keeps the
tensor signature and the ``pt2`` export.

The state-dict checkpoint beside it (``checkpoint/model.pt``) is unchanged: warm starts and the
champion's scores read that, never this model.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
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


# MLflow links every run metric logged at the model's step (0 by default) to the logged model —
# before and after log_model: the warm start's and the champion's hold-out figures would show on the
# challenger's page. At step −1 nothing is linked implicitly; rsft.tracking.lineage.record links the
# model's own figures (its hold-out metrics, its training-set size) with their datasets.
LOGGED_MODEL_STEP = -1


def input_example(x: np.ndarray, names: list[str]) -> Any:
    """The input example of a model with inputs ``names``: a DataFrame with those columns when
    there is one name per column of ``x`` (tabular), else ``x`` itself (text ids)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names) or not np.issubdtype(x.dtype, np.floating):
        return x
    import pandas as pd

    return pd.DataFrame(x.astype(np.float32), columns=list(names))


def log_model_args(example: Any, model: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``mlflow.pytorch.log_model`` given the input example (and the model,
    whose output on it gives the output tensor's width)."""
    import pandas as pd

    if not isinstance(example, pd.DataFrame):
        return {"input_example": example, "step": LOGGED_MODEL_STEP}
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs = None
    if model is not None:
        import torch

        with torch.no_grad():
            out = model(torch.from_numpy(example.to_numpy(np.float32).copy()))  # writable: no torch warning
        width = (-1, *out.shape[1:]) if out.ndim > 1 else (-1,)
        outputs = Schema([TensorSpec(np.dtype(np.float32), width)])
    signature = ModelSignature(inputs=Schema([ColSpec("double", str(c)) for c in example.columns]), outputs=outputs)
    if _FILTER not in logging.getLogger("mlflow.pytorch").filters:
        logging.getLogger("mlflow.pytorch").addFilter(_FILTER)
        # MLflow checks the example by predicting on it, through a read-only array: torch warns once
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
    return {"input_example": example.astype(np.float64), "signature": signature, "serialization_format": "pickle",
            "step": LOGGED_MODEL_STEP}


_BY_VALUE_LOCK = threading.Lock()


@contextlib.contextmanager
def classes_by_value(model: Any):
    """While logging ``model``: cloudpickle (MLflow's pickle module) writes the code of its rsft
    classes into the pickle instead of a reference to ``rsft.models``, so the logged model loads
    where rsft is not installed without a copy of rsft's source beside it. A user's own class
    (``model.import_path``) stays a reference: its package must be installed where it is served.
    The registration is process-wide (cloudpickle's), so it is undone after, under a lock."""
    import importlib

    import cloudpickle

    names = sorted({type(m).__module__ for m in model.modules()} if hasattr(model, "modules") else set())
    mods = [importlib.import_module(n) for n in names if n == "rsft" or n.startswith("rsft.")]
    with _BY_VALUE_LOCK:
        for mod in mods:
            cloudpickle.register_pickle_by_value(mod)
        try:
            yield
        finally:
            for mod in mods:
                cloudpickle.unregister_pickle_by_value(mod)


def describe_logged_model(mlc, name: str, version: str | None, text: str) -> None:
    """The logged model's description (its page's note), for the version's model."""
    if version is None:
        return

    model_id = logged_model_id(mlc.get_model_version(name, str(version)))
    if model_id:
        mlc.set_logged_model_tags(model_id, {"mlflow.note.content": text})


def logged_model_id(mv) -> str | None:
    """The logged model behind a registered version (its source is ``models:/<model id>``)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    src = str(getattr(mv, "source", "") or "")
    return src[len("models:/"):].split("/")[0] if src.startswith("models:/m-") else None
