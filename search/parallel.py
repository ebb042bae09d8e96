"""Trainings run side by side, one process per core: the measurements of ``search.proxy`` and
``search.benchmark`` are hundreds of independent trainings.

Small networks gain little from a second thread (about 1.4x from 2), so two processes of one
thread each do nearly twice the work of one process of two. Each worker is pinned to its own
share of the cores (``pin``), and a training's default ``train.threads`` is the cores its process
owns, so workers never compete for a core. Each worker loads the data once (the loader's cache
lives per process) and results come back as they finish, so a caller can save them as it goes
and lose nothing when a run stops mid-way.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Callable, Iterator, Sequence

from archgen import ModelSpec

from .data import DataSettings, load_data
from .evaluators import TrialFailed
from .evaluators.train import TrainResult, TrainSettings, train


@dataclass(frozen=True)
class Job:
    """One training: a proxy network, the data it trains on and how."""

    spec: ModelSpec
    data: DataSettings
    train: TrainSettings


Outcome = TrainResult | TrialFailed  # a diverged training is a result to record, not a crash


def pin(worker: int, workers: int) -> None:
    """Restrict this process to worker ``worker``'s share (of ``workers`` equal shares) of the
    cores it may run on; with fewer cores than workers, workers share cores round-robin."""
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows: no affinity; threads still default to all cores
        return
    cores = sorted(os.sched_getaffinity(0))
    share = [c for i, c in enumerate(cores) if i * workers // len(cores) == worker % workers] if len(cores) >= workers \
        else [cores[worker % len(cores)]]
    os.sched_setaffinity(0, share)


def _pin_next(counter: Synchronized, workers: int) -> None:  # type: ignore[type-arg]
    """A pool worker's initializer: take the next worker number and pin to its cores."""
    with counter.get_lock():
        worker = counter.value
        counter.value += 1
    pin(worker, workers)


def run_job(job: Job) -> Outcome:
    """Train one job in this process."""
    try:
        return train(job.spec, load_data(job.data), job.train)
    except TrialFailed as failed:
        return failed


def run_jobs(jobs: Sequence[Job], workers: int = 1) -> Iterator[tuple[int, Outcome]]:
    """``(index into jobs, outcome)`` for every job, in the order they finish.

    ``workers`` 1 trains in this process, in order; more start that many processes (``spawn``:
    a fork of a process whose OpenMP pool has started can hang). At most ``workers`` jobs are
    queued at a time, so stopping the iteration (Ctrl-C) leaves nothing running for long.
    """
    if workers <= 1:
        for i, job in enumerate(jobs):
            yield i, run_job(job)
        return
    pending: dict[Future[Outcome], int] = {}
    todo = iter(enumerate(jobs))
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pin_next,
                             initargs=(counter, workers)) as pool:
        try:
            while True:
                for i, job in todo:
                    pending[pool.submit(run_job, job)] = i
                    if len(pending) >= workers:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def train_all(jobs: Sequence[Job], workers: int = 1, done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
    """Every job's outcome, in the jobs' order; ``done(index, outcome)`` is called as each finishes."""
    out: list[Outcome | None] = [None] * len(jobs)
    for i, outcome in run_jobs(jobs, workers):
        out[i] = outcome
        if done is not None:
            done(i, outcome)
    return out  # type: ignore[return-value]
