"""A second thread for the back half of a video loop: expand, render, draw, encode.

On a machine with two cores, the per-frame work splits naturally: the main
thread decodes and tracks (detector, FaceMesh, model fit), and a worker thread
turns the previous frame's faces into pictures and writes them. The heavy
parts of the back half (the C renderer and subdivision through ctypes,
OpenCV's drawing and encoding) release the GIL, so the two halves really run
at the same time. Each network still uses one thread.

Frames are finished in order, at most ``depth`` frames behind the main
thread (the main thread waits when the worker falls behind, so memory stays
bounded). An exception in the worker is raised in the main thread at the next
:meth:`FrameWorker.submit` or at :meth:`FrameWorker.close`.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

_STOP = object()


class FrameWorker:
    """Run ``finish(*item)`` for each submitted item, in order, on one worker thread.

    Parameters
    ----------
    finish : callable
        Called with the items' arguments on the worker thread.
    depth : int
        Items that may wait (default 2: one being finished, one queued).

    Examples
    --------
    >>> with FrameWorker(lambda frame, faces: writer.write(draw(frame, faces))) as worker:
    ...     for frame in frames:
    ...         worker.submit(frame, tracker.process(frame))
    """

    def __init__(self, finish: Callable, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._finish = finish
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="densehead-frame-worker", daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if not self._failed:  # after a failure, drain without working so submit() never blocks
                try:
                    self._finish(*item)
                except BaseException as exc:  # re-raised in the main thread
                    self._error, self._failed = exc, True

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, *args) -> None:
        """Queue one item (waits while ``depth`` items are pending)."""
        if self._closed:
            raise RuntimeError("submit() after close()")
        self._raise_error()
        self._queue.put(args)

    def close(self) -> None:
        """Finish every queued item, stop the thread, and raise the worker's error if it had one."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_error()

    def __enter__(self) -> "FrameWorker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: finish the queued frames (outputs stay valid), keep the first error
            try:
                self.close()
            except BaseException:
                pass
