"""Micro-batching of concurrent pipeline calls.

Request threads submit one image each. A single worker thread takes whatever is queued, up
to `max_batch` images and waiting at most `max_wait_ms` after the first, and runs them as one
`FacePipeline.analyze_batch` call. MTCNN and the embedder run one batched pass instead of
several small ones, which raises throughput under concurrent load. A lone request waits at
most `max_wait_ms` more.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from models.pipeline import Analysis, FacePipeline

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    image: np.ndarray
    embed: bool
    keep_crops: bool
    max_faces: int | None
    future: Future = field(default_factory=Future)


class BatchingAnalyzer:
    def __init__(self, pipeline: FacePipeline, *, max_batch: int = 8, max_wait_ms: float = 2.0) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="facegate-inference", daemon=True)
        self._worker.start()

    def analyze(
        self, image: np.ndarray, *, embed: bool = True, keep_crops: bool = False, max_faces: int | None = None
    ) -> Analysis:
        """Queue one image and block until its analysis is ready; re-raises the pipeline's error."""
        job = _Job(image, embed, keep_crops, max_faces)
        self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._queue.put(None)
        self._worker.join(timeout=60)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.max_wait_s
            stop = False
            while len(jobs) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._process(jobs)
            if stop:
                return

    def _process(self, jobs: list[_Job]) -> None:
        # Jobs that need the same outputs share one batch.
        groups: dict[tuple[bool, bool], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((job.embed, job.keep_crops), []).append(job)
        for (embed, keep_crops), group in groups.items():
            try:
                analyses = self.pipeline.analyze_batch(
                    [job.image for job in group],
                    embed=embed,
                    keep_crops=keep_crops,
                    max_faces=[job.max_faces for job in group],
                )
            except Exception as error:  # handed to every waiting request, which re-raises it
                if len(group) == 1:
                    group[0].future.set_exception(error)
                    continue
                # One bad image must not fail its neighbours: retry each alone.
                for job in group:
                    self._process_one(job, embed, keep_crops)
                continue
            for job, analysis in zip(group, analyses):
                job.future.set_result(analysis)

    def _process_one(self, job: _Job, embed: bool, keep_crops: bool) -> None:
        try:
            job.future.set_result(
                self.pipeline.analyze(job.image, embed=embed, keep_crops=keep_crops, max_faces=job.max_faces)
            )
        except Exception as error:  # the request thread re-raises it
            job.future.set_exception(error)
