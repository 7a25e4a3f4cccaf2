"""Scenes modelled in parallel: worker processes, each running the background model on one scene
at a time (a scene's model is independent of every other scene's, so the outputs are those of
one process doing the scenes in turn).

The processes are started fresh (`spawn`: nothing of the stage's threads or OpenCV's thread pool
is inherited) and run OpenCV on one thread each, as the stage's own process does meanwhile: the
processes themselves use the cores the stage holds.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ...errors import StageExecutionError
from .backend_base import Prediction

AUTO_MAX = 4          # `workers: 0` uses one process a usable core, at most this many


def usable_cores() -> int:
    """The cores this process may run on, at most AUTO_MAX."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(AUTO_MAX, n))


def single_threaded_opencv() -> int:
    """OpenCV on one thread from now on; returns the number of threads it had."""
    import cv2
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return threads


def restore_opencv_threads(threads: int) -> None:
    import cv2
    cv2.setNumThreads(threads)


def _start_worker() -> None:
    single_threaded_opencv()


def _ready() -> None:
    """Nothing: submitted once a worker so that the processes start (and import the model) while
    the stage reads the first scene's frames."""
    from . import background_model  # noqa: F401


def model_scene(backend, images, indices, context) -> list[Prediction]:
    """A scene's predictions: from its context frames (read from the video) when there are any."""
    if context is not None:
        return backend.predict_scene_with_context(images, indices, context)
    return backend.predict_scene(images)


def _model_scene(backend, images, indices, context) -> tuple[list[Prediction], int]:
    """A scene's predictions in a worker, and how many of its frames fell back to the border model."""
    before = backend.fallback_frames
    preds = model_scene(backend, images, indices, context)
    return preds, backend.fallback_frames - before


class ScenePool:
    """`workers` processes modelling scenes with copies of `backend`; `result` gives a scene's
    predictions and counts its fallback frames on `backend`, as if it had modelled the scene."""

    def __init__(self, backend, workers: int, *, stage: str | None = None):
        self.backend = backend
        self.stage = stage
        self.executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker)
        for _ in range(workers):
            self.executor.submit(_ready)

    def submit(self, images, indices, context) -> Future:
        return self.executor.submit(_model_scene, self.backend, images, indices, context)

    def result(self, future: Future) -> list[Prediction]:
        try:
            preds, fallbacks = future.result()
        except BrokenProcessPool as exc:
            raise StageExecutionError("a scene worker process ended abruptly (killed, or out of memory); "
                                      "set workers: 1 to model one scene at a time", stage=self.stage) from exc
        self.backend.fallback_frames += fallbacks
        return preds

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
