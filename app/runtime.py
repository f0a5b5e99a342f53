"""Per-app runtime state: settings, metrics, and the models and gallery once loaded.

Models load in a background thread at start-up, so /healthz responds at once and /readyz
reports false until the pipeline is loaded and warmed up.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from app.errors import ModelNotReadyError, StartupFailedError
from app.gallery.base import GalleryStore
from app.gallery.sqlite import SqliteGalleryStore
from app.metrics import Metrics
from app.services.batching import BatchingAnalyzer
from app.services.recognition import RecognitionService
from app.settings import Settings
from models.errors import FacegateError
from models.pipeline import FacePipeline

logger = logging.getLogger(__name__)


def open_store(settings: Settings, embedder_id: str, dimension: int) -> GalleryStore:
    return SqliteGalleryStore(
        settings.gallery_path, embedder_id=embedder_id, dimension=dimension, crops_dir=settings.crops_dir
    )


class Runtime:
    def __init__(self, settings: Settings, pipeline: FacePipeline | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._pipeline = pipeline
        self._service: RecognitionService | None = None
        self.load_error: FacegateError | None = None
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._load, name="facegate-model-loader", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        self._loaded.wait(timeout_s)
        return self._service is not None

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            pipeline = self._pipeline or FacePipeline(self.settings.pipeline_config())
            # One forward through every stage, so the first request does not pay for lazy set-up.
            pipeline.analyze(np.full((160, 160, 3), 128, np.uint8))
            pipeline.embed_crops(np.zeros((1, pipeline.embedder.input_size, pipeline.embedder.input_size, 3), np.uint8))
            store = open_store(self.settings, pipeline.embedder_id, pipeline.embedder.dimension)
            self.metrics.track_gallery(store.count_faces, store.count_identities)
            analyzer = BatchingAnalyzer(pipeline, max_batch=self.settings.max_batch_size)
            self._service = RecognitionService(self.settings, pipeline, store, self.metrics, analyzer)
            logger.info(
                "Ready in %.1f s: embedder %s on %s, gallery %s with %d faces",
                time.perf_counter() - started,
                pipeline.embedder_id,
                pipeline.device,
                self.settings.gallery_path,
                store.count_faces(),
            )
        except FacegateError as error:
            self.load_error = error
            logger.error("Start-up failed: %s", error)
        except Exception as error:  # any loader failure must leave /readyz explaining it
            self.load_error = ModelNotReadyError(f"{error}.", hint="See the server log for the traceback.")
            logger.exception("Start-up failed")
        finally:
            self._loaded.set()

    @property
    def service(self) -> RecognitionService:
        if self._service is not None:
            return self._service
        if self.load_error is not None:
            # Whatever stopped the start (a missing weights file, a gallery made by another
            # embedder), the service cannot serve: 503, with the original problem's words.
            raise StartupFailedError(
                f"The service failed to start: {self.load_error.message}",
                value=self.load_error.code,
                hint=self.load_error.hint,
            )
        raise ModelNotReadyError(
            "The models are still loading.", hint="Retry in a few seconds; GET /readyz reports when ready."
        )

    @property
    def ready(self) -> bool:
        return self._service is not None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._service is not None:
            self._service.analyzer.close()
            self._service.store.close()
            logger.info("Gallery closed")
