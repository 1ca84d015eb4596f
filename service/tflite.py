"""One small adapter around the LiteRT interpreter.

LiteRT (``ai-edge-litert``) is the runtime; the thread count is explicit and
defaults to 1 because the product promises one-core real time. Where LiteRT is
not installed but tensorflow is (the seed's users have it), tensorflow's
``tf.lite.Interpreter`` runs the same models through the same calls: on the
CPU, like LiteRT (no delegate is ever added, so no GPU is touched).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide the C++ runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line.

    LiteRT prints it straight to file descriptor 2 (no setting turns it off);
    it would break the one-line errors and clean output the scripts promise.
    Python-level errors still surface as exceptions.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. embedded): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def interpreter_class():
    """``(Interpreter class, runtime name)``: LiteRT, else tensorflow's ``tf.lite``.

    Raises
    ------
    ImportError
        Neither is installed; the message says how to install LiteRT.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no page of C++ start-up notices
        with _native_stderr_silenced():
            import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"
    except ImportError:
        pass
    raise ImportError("no TFLite runtime: LiteRT is not installed. Run: pip install ai-edge-litert==2.3.0 "
                      "(or: make setup); tensorflow's tf.lite works too")


class TFLiteModel:
    """A loaded ``.tflite`` model with one float32 input.

    Parameters
    ----------
    path : Path
        Model file.
    num_threads : int
        CPU threads for the interpreter (XNNPACK).
    """

    def __init__(self, path: Path, num_threads: int = 1):
        Interpreter, self.runtime = interpreter_class()
        try:
            with _native_stderr_silenced():
                self._interpreter = Interpreter(model_path=str(path), num_threads=int(num_threads))
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{path} is not a valid TFLite model ({exc}). "
                             f"Delete it and run: make setup") from exc
        inp = self._interpreter.get_input_details()[0]
        self.input_shape = tuple(int(v) for v in inp["shape"])
        self._input_index = inp["index"]
        self._output_indices = [d["index"] for d in self._interpreter.get_output_details()]

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        """Invoke the model on ``image`` (float32, the model's input shape)."""
        self._interpreter.set_tensor(self._input_index, image)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i) for i in self._output_indices]
