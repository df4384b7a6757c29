"""XGBoost's own predictor, called through its C API without importing the xgboost package.

``import xgboost`` imports scipy, scikit-learn and pandas when they are installed (about
0.9 s of a cold start) and needs scipy (~140 MB) in the Lambda package even when they are
not. Prediction needs none of that: the xgboost-cpu wheel ships ``libxgboost.so``, and
its documented C API loads a model file and predicts from a dense array, which is all
serving does. Results are XGBoost's own, bit for bit, since the same library computes
them; the model file stays XGBoost's native format.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
from pathlib import Path

import numpy as np

__all__ = ["NativeBooster", "XGBoostLibraryError", "library_path"]


class XGBoostLibraryError(RuntimeError):
    """libxgboost is missing, or one of its calls failed (with XGBoost's message)."""


def library_path() -> Path:
    """``xgboost/lib/libxgboost.so`` of the installed xgboost(-cpu), found without importing it.

    ``find_spec`` of a top-level package only locates it; nothing of it runs.
    """
    spec = importlib.util.find_spec("xgboost")
    if spec is None or not spec.submodule_search_locations:
        raise XGBoostLibraryError("xgboost is not installed: no libxgboost to load")
    for folder in spec.submodule_search_locations:
        for name in ("libxgboost.so", "libxgboost.dylib", "xgboost.dll"):
            candidate = Path(folder) / "lib" / name
            if candidate.is_file():
                return candidate
    raise XGBoostLibraryError(f"no libxgboost in {list(spec.submodule_search_locations)}")


_LIBRARY: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _LIBRARY
    if _LIBRARY is None:
        lib = ctypes.cdll.LoadLibrary(str(library_path()))
        lib.XGBGetLastError.restype = ctypes.c_char_p
        _LIBRARY = lib
    return _LIBRARY


def _check(code: int) -> None:
    if code != 0:
        message = _library().XGBGetLastError()
        raise XGBoostLibraryError(message.decode() if message else f"XGBoost error {code}")


_BstUlong = ctypes.c_uint64


class NativeBooster:
    """A loaded XGBoost model; predicts margins like ``Booster.inplace_predict``."""

    def __init__(self, model: bytes | bytearray | Path, nthread: int = 1) -> None:
        """Load a model file (or its raw bytes, e.g. ``Booster.save_raw("ubj")``).

        ``nthread=1``: a request's ~100 rows gain nothing from a thread pool and would
        pay its wake-ups on every call.
        """
        lib = _library()
        self._handle = ctypes.c_void_p()
        _check(lib.XGBoosterCreate(None, _BstUlong(0), ctypes.byref(self._handle)))
        try:
            if isinstance(model, Path):
                _check(lib.XGBoosterLoadModel(self._handle, str(model).encode()))
            else:
                buffer = (ctypes.c_char * len(model)).from_buffer_copy(bytes(model))
                _check(
                    lib.XGBoosterLoadModelFromBuffer(self._handle, buffer, _BstUlong(len(model)))
                )
            _check(lib.XGBoosterSetParam(self._handle, b"nthread", str(nthread).encode()))
        except XGBoostLibraryError:
            self.close()
            raise

    def close(self) -> None:
        if self._handle:
            _library().XGBoosterFree(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self) -> None:
        if _LIBRARY is not None:
            self.close()

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The column names the model was trained with, if it recorded them."""
        length = _BstUlong()
        names = ctypes.POINTER(ctypes.c_char_p)()
        _check(
            _library().XGBoosterGetStrFeatureInfo(
                self._handle, b"feature_name", ctypes.byref(length), ctypes.byref(names)
            )
        )
        values = tuple(names[i].decode() for i in range(length.value))
        return values or None

    def num_boosted_rounds(self) -> int:
        rounds = ctypes.c_int()
        _check(_library().XGBoosterBoostedRounds(self._handle, ctypes.byref(rounds)))
        return rounds.value

    def predict(self, features: np.ndarray, missing: float = math.nan) -> np.ndarray:
        """Raw scores [rows] for a dense float matrix [rows, features].

        The same call (``XGBoosterPredictFromDense``, value prediction, no proxy DMatrix)
        as the Python package's ``inplace_predict``.
        """
        data = np.ascontiguousarray(features, dtype=np.float32)
        if data.ndim != 2:
            raise ValueError(f"expected a [rows, features] matrix, got shape {data.shape}")
        if data.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        interface = data.__array_interface__
        array = json.dumps(
            {
                "data": [interface["data"][0], True],
                "shape": list(data.shape),
                "strides": None,
                "typestr": interface["typestr"],
                "version": 3,
            }
        )
        config = json.dumps(
            {
                "type": 0,
                "training": False,
                "iteration_begin": 0,
                "iteration_end": 0,
                "strict_shape": False,
                "missing": missing,
                "cache_id": 0,
            }
        )
        shape = ctypes.POINTER(_BstUlong)()
        dims = _BstUlong()
        result = ctypes.POINTER(ctypes.c_float)()
        _check(
            _library().XGBoosterPredictFromDense(
                self._handle,
                array.encode(),
                config.encode(),
                None,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(result),
            )
        )
        size = int(np.prod([shape[i] for i in range(dims.value)]))
        # The buffer belongs to the booster and is reused by its next call: copy it.
        return np.ctypeslib.as_array(result, shape=(size,)).copy()
