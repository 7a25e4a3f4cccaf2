"""Scenes modelled in parallel: worker threads, each running the background model on one scene at
a time with its own copy of the backend (a scene's model is independent of every other scene's, so
the outputs are those of one thread doing the scenes in turn).

The model's heavy work is OpenCV and NumPy calls, which release the GIL; OpenCV runs on one thread
(process-wide, `single_threaded_opencv`), so the threads themselves use the cores the stage holds.
Threads rather than processes: no interpreter to start for a worker, no frames and predictions
pickled across (docs/benchmarks.md).
"""
from __future__ import annotations

import copy
import os
from concurrent.futures import Future, ThreadPoolExecutor

from .backend_base import Prediction

AUTO_MAX = 4          # `workers: 0` uses one thread a usable core, at most this many


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


def model_scene(backend, images, indices, context) -> list[Prediction]:
    """A scene's predictions: from its context frames (read from the video) when there are any."""
    if context is not None:
        return backend.predict_scene_with_context(images, indices, context)
    return backend.predict_scene(images)


def _model_scene(backend, images, indices, context) -> tuple[list[Prediction], int]:
    """A scene's predictions by a copy of the backend, and how many of its frames fell back to the
    border model."""
    preds = model_scene(backend, images, indices, context)
    return preds, backend.fallback_frames


class ScenePool:
    """`workers` threads modelling scenes with copies of `backend`; `result` gives a scene's
    predictions and counts its fallback frames on `backend`, as if it had modelled the scene."""

    def __init__(self, backend, workers: int):
        self.backend = backend
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="scene")

    def submit(self, images, indices, context) -> Future:
        scene_backend = copy.copy(self.backend)
        scene_backend.fallback_frames = 0
        return self.executor.submit(_model_scene, scene_backend, images, indices, context)

    def result(self, future: Future) -> list[Prediction]:
        preds, fallbacks = future.result()
        self.backend.fallback_frames += fallbacks
        return preds

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
