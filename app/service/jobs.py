"""Fit jobs: run StructCoreModel.fit in worker threads and track their state."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from app.engine.config import EngineConfig
from app.engine.imageio import decode_image
from app.engine.model import MIN_TRAIN_IMAGES, FitCancelledError, StructCoreModel
from app.service.active_models import ActiveModels
from app.service.metrics import ServiceMetrics
from app.service.problems import ProblemError
from app.service.store import ModelStore, utc_now

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
_FINISHED: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})
# Share of the job's progress bar spent decoding the stored samples.
_DECODE_SHARE = 0.05
# Finished jobs kept for GET /jobs; older ones are forgotten.
_KEPT_FINISHED_JOBS = 500


@dataclass
class FitJob:
    """State of one fit, as returned by GET /jobs/{id}."""

    id: str
    product: str
    activate: bool
    settings: dict[str, Any]
    state: JobState = "queued"
    progress: float = 0.0
    stage: str | None = None
    error: str | None = None
    model_version: str | None = None
    created: str = field(default_factory=utc_now)
    started: str | None = None
    finished: str | None = None
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future[None] | None = field(default=None, repr=False)

    @property
    def is_finished(self) -> bool:
        return self.state in _FINISHED

    def view(self) -> dict[str, Any]:
        """Return the public fields (JobOut), without the thread handles."""
        return {
            "id": self.id,
            "product": self.product,
            "state": self.state,
            "progress": self.progress,
            "stage": self.stage,
            "error": self.error,
            "model_version": self.model_version,
            "activate": self.activate,
            "settings": self.settings,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }


class FitJobs:
    """Queue of fit jobs, at most one unfinished job per product.

    Jobs live in memory only, so a restart loses them. A fit killed with the
    process leaves at most a temporary folder, which ModelStore.recover deletes.
    """

    def __init__(
        self,
        store: ModelStore,
        models: ActiveModels,
        metrics: ServiceMetrics,
        *,
        device: str,
        workers: int,
        max_image_pixels: int,
    ) -> None:
        self.store = store
        self.models = models
        self.metrics = metrics
        self.device = device
        self.max_image_pixels = max_image_pixels
        self._jobs: dict[str, FitJob] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="structcore-fit"
        )

    def submit(self, product: str, config: EngineConfig, activate: bool) -> FitJob:
        """Queue a fit of `product` with `config`.

        Raises:
            ProblemError: 409 if the product already has an unfinished job, 422
                if it has fewer good samples than the engine accepts.
        """
        with self._lock:
            running = self.unfinished_job(product)
            if running is not None:
                raise ProblemError(
                    409,
                    "fit_running",
                    f"product {product!r} already has fit job {running.id} "
                    f"({running.state}); wait for it or cancel it with "
                    f"DELETE /jobs/{running.id}",
                    job_id=running.id,
                )

            count = self.store.count_samples(product)
            if count < MIN_TRAIN_IMAGES:
                raise ProblemError(
                    422,
                    "too_few_samples",
                    f"product {product!r} has {count} good samples but a fit needs "
                    f"at least {MIN_TRAIN_IMAGES}; upload more with "
                    f"POST /products/{product}/samples",
                    minimum=MIN_TRAIN_IMAGES,
                    samples=count,
                )

            self._forget_old_jobs()
            job = FitJob(
                id=uuid.uuid4().hex,
                product=product,
                activate=activate,
                settings=config.to_dict(),
            )
            self._jobs[job.id] = job
            logger.info("fit job %s queued for product %s", job.id, product)
            job.future = self._executor.submit(self._run, job, config)
        return job

    def _forget_old_jobs(self) -> None:
        """Drop the oldest finished jobs beyond _KEPT_FINISHED_JOBS."""
        finished = [job for job in self.list_jobs() if job.is_finished]
        for job in finished[: max(0, len(finished) - _KEPT_FINISHED_JOBS)]:
            del self._jobs[job.id]

    def get(self, job_id: str) -> FitJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise ProblemError(
                404,
                "job_not_found",
                f"job {job_id!r} not found; jobs are kept in memory and a restart "
                "forgets them, so list current ones with GET /jobs",
            )
        return job

    def list_jobs(self, product: str | None = None) -> list[FitJob]:
        jobs = sorted(list(self._jobs.values()), key=lambda job: job.created)
        return [job for job in jobs if product is None or job.product == product]

    def unfinished_job(self, product: str) -> FitJob | None:
        for job in list(self._jobs.values()):
            if job.product == product and not job.is_finished:
                return job
        return None

    def cancel(self, job_id: str) -> FitJob:
        """Cancel a queued job at once, or ask a running one to stop."""
        job = self.get(job_id)
        with self._lock:
            if job.is_finished:
                raise ProblemError(
                    409,
                    "job_finished",
                    f"job {job_id} already {job.state}; only queued or running "
                    "jobs can be cancelled",
                    state=job.state,
                )
            job.stop.set()
            if job.future is not None and job.future.cancel():
                self._finish(job, "cancelled")
        logger.info("fit job %s: cancellation requested", job_id)
        return job

    def shutdown(self) -> None:
        """Stop every job and wait for the worker threads to exit."""
        for job in list(self._jobs.values()):
            job.stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _finish(self, job: FitJob, state: JobState, error: str | None = None) -> None:
        job.state = state
        job.error = error
        job.finished = utc_now()

    def _run(self, job: FitJob, config: EngineConfig) -> None:
        job.state = "running"
        job.started = utc_now()
        started = time.perf_counter()
        logger.info("fit job %s started for product %s", job.id, job.product)
        try:
            self._fit_and_store(job, config)
        except FitCancelledError as exc:
            self._finish(job, "cancelled")
            logger.info("fit job %s cancelled at stage %s: %s", job.id, job.stage, exc)
        except Exception as exc:
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
            logger.exception("fit job %s for product %s failed", job.id, job.product)
        else:
            self._finish(job, "succeeded")
            logger.info(
                "fit job %s succeeded: product %s version %s",
                job.id,
                job.product,
                job.model_version,
            )
        finally:
            seconds = time.perf_counter() - started
            self.metrics.fit_seconds.labels(job.state).observe(seconds)

    def _fit_and_store(self, job: FitJob, config: EngineConfig) -> None:
        images, sample_ids = self._decode_samples(job)

        def report(stage: str, fraction: float) -> None:
            job.stage = stage
            job.progress = _DECODE_SHARE + (1.0 - _DECODE_SHARE) * fraction
            logger.debug("fit job %s: %s %.2f", job.id, stage, fraction)

        model = StructCoreModel.fit(
            images,
            config,
            progress=report,
            should_stop=job.stop.is_set,
            device=self.device,
        )
        if job.stop.is_set():
            raise FitCancelledError

        job.stage = "saving"
        meta = {
            "job_id": job.id,
            "num_samples": len(sample_ids),
            "sample_ids": sample_ids,
            "summary": model.summary(),
        }
        info = self.store.write_version(job.product, model, meta)
        job.model_version = info.version
        if job.activate:
            self.models.activate_new(job.product, info.version, model)
        job.stage = "done"
        job.progress = 1.0

    def _decode_samples(self, job: FitJob) -> tuple[list[Any], list[str]]:
        samples = self.store.list_samples(job.product)
        images = []
        job.stage = "decoding samples"
        for index, sample in enumerate(samples):
            if job.stop.is_set():
                raise FitCancelledError
            data = sample.path.read_bytes()
            images.append(decode_image(data, max_pixels=self.max_image_pixels))
            job.progress = _DECODE_SHARE * (index + 1) / len(samples)
        return images, [sample.id for sample in samples]
