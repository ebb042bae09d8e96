"""Where a study's trials live, for one worker or for many machines: Optuna's storages, and the two
things workers sharing a study need beyond them.

* ``sqlite:///path/studies.db``: one machine (SQLite's locking is not safe on NFS).
* ``postgresql://user@host:port/db`` (or ``mysql://``): many machines, through a database server;
  the driver comes with ``pip install "archgen[postgresql]"``.
* ``journal:///path/studies.log``: Optuna's journal file storage (``JournalFileBackend``), an
  append-only log that Optuna recommends on a network file system shared by the machines.

What workers on one study need beyond Optuna:

* **A claim.** A worker takes its next trial under a lock held across the count and the trial's
  creation, so a study ends with exactly ``n_trials`` trials whatever the number of workers
  (Optuna's ``MaxTrialsCallback`` counts only after a trial, so two workers overshoot). The lock
  is a file lock next to a SQLite or journal file, and an advisory lock of the server otherwise;
  both are released by the operating system or the server when their holder dies. The journal's
  writes take the same kind of lock (Optuna's default, a symlink, outlives a killed writer for 30 s,
  long enough to starve every other worker's heartbeats and fail their trials as lost), so every
  worker on a journal file must be archgen's.
* **A heartbeat.** A running trial's worker records a heartbeat every ``heartbeat_interval``
  seconds (Optuna's RDB heartbeat; the journal's is added here, optuna/optuna#6615). A trial
  without one for ``grace_period`` seconds is marked failed by the next worker to claim a trial
  (its worker was lost: killed, out of memory, its machine gone) and is retried once, with the
  same parameters, by Optuna's ``RetryHeartbeatStaleTrialCallback``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import optuna
import sqlalchemy
import sqlalchemy.exc
from filelock import FileLock
from optuna.exceptions import ExperimentalWarning
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # what fail_stale_trials asks of a storage; not re-exported
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # the lock interface JournalFileBackend takes
from optuna.trial import FrozenTrial, TrialState

from archgen import SpecError

JOURNAL = "journal:///"
SQLITE = "sqlite:///"
HEARTBEAT_ATTR = "heartbeat"  # the journal's: a trial system attribute, seconds since the epoch
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # the process, as trials.csv's "worker" names it
WORKER_ATTR = "worker"  # set on a trial after its first heartbeat
DEFAULT_HEARTBEAT_INTERVAL = 30
DEFAULT_GRACE_PERIOD = 120

# a lock, around the count and the creation of a trial, of one study (by name)
Claim = Callable[[str], ContextManager[None]]


class _JournalLock(BaseJournalFileLock):
    """The journal's write lock as an OS file lock, which the kernel releases when its holder dies."""

    def __init__(self, path: Path) -> None:
        self._lock = FileLock(f"{path}.write.lock")  # per thread: the heartbeat thread writes too

    def acquire(self) -> bool:
        self._lock.acquire()
        return True

    def release(self) -> None:
        self._lock.release()


class _Retry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a lost trial, with its parameters only: not its worker or figures it had
    recorded before it was lost."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        bare = copy.copy(trial)
        bare.user_attrs = {}
        super().__call__(study, bare)


class _JournalWithHeartbeat(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with the heartbeat its RDB storage has.

    A trial's last heartbeat is a system attribute in the recording worker's clock, so the
    machines sharing a journal must agree on the time to within the grace period (as NTP keeps
    them); RDB storages compare in the database server's clock instead."""

    def __init__(self, backend: JournalFileBackend, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if now - t.system_attrs.get(HEARTBEAT_ATTR, now) > self._grace_period]

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback


@dataclass
class Storage:
    """An Optuna storage (``backend``: what ``optuna.create_study`` takes) with its claim and heartbeat."""

    url: str
    backend: optuna.storages.BaseStorage
    heartbeat_interval: int
    grace_period: int
    retry: Callable[[optuna.Study, FrozenTrial], None] | None
    _claim: Claim

    def claim(self, study_name: str) -> ContextManager[None]:
        """Held while a worker counts a study's trials and creates its next one."""
        return self._claim(study_name)

    def record_heartbeat(self, trial: optuna.Trial) -> None:
        if isinstance(self.backend, BaseHeartbeat):  # an in-memory study has one worker, which cannot be lost
            self.backend.record_heartbeat(trial._trial_id)  # Trial has no public id

    @contextlib.contextmanager
    def heartbeat(self, trial: optuna.Trial) -> Iterator[None]:
        """A heartbeat every ``heartbeat_interval`` seconds while the block runs (the first one is
        recorded at the claim, so that a trial is never running without one)."""
        stop = threading.Event()

        def beat() -> None:
            warned = False
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.record_heartbeat(trial)
                except Exception as e:  # the server may be back at the next beat; the trial goes on
                    if not warned:
                        warnings.warn(f"trial {trial.number}: heartbeat not recorded ({str(e).splitlines()[0]})")
                        warned = True

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_lost_trials(self, study: optuna.Study) -> None:
        """Mark failed the running trials whose heartbeat stopped (and enqueue their retries).

        Also those that never had one: a worker that died between creating its trial and its first
        heartbeat (``claim`` names the worker after that heartbeat), which Optuna's check skips."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        now = datetime.now()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if WORKER_ATTR in t.user_attrs or t.datetime_start is None:
                continue
            if (now - t.datetime_start).total_seconds() > self.grace_period:
                try:
                    lost = study.tell(t.number, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
                    continue
                if self.retry is not None:
                    self.retry(study, lost)


def _file_claim(path: Path) -> Claim:
    lock = FileLock(f"{path}.claim.lock")  # one lock per file: a study's claims wait for another study's, briefly
    return lambda study_name: lock


def _advisory_claim(engine: sqlalchemy.engine.Engine) -> Claim:
    """A session-level advisory lock of the server, on a connection of its own for as long as it is held."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        take, give = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    elif dialect in ("mysql", "mariadb"):
        take, give = "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"
    else:
        raise SpecError(f"storage dialect {dialect!r}: workers claim trials under an advisory lock, which archgen "
                        "takes on postgresql and mysql servers (and a file lock for sqlite and journal files)")

    @contextlib.contextmanager
    def claim(study_name: str) -> Iterator[None]:
        digest = hashlib.sha256(f"archgen-claim:{study_name}".encode()).digest()
        key: Any = int.from_bytes(digest[:8], "big", signed=True) if dialect == "postgresql" else digest.hex()[:60]
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(take), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(give), {"key": key})

    return claim


def _file(url: str, prefix: str) -> Path:
    path = Path(url.removeprefix(prefix))
    if not path.name:
        raise SpecError(f"storage {url!r}: no file named after {prefix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def open_storage(url: str, heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
                 grace_period: int = DEFAULT_GRACE_PERIOD, retry_lost: bool = True) -> Storage:
    """The storage at ``url`` (its file, and the file's folder, made where missing), with heartbeats
    every ``heartbeat_interval`` seconds; ``retry_lost``: a lost trial is retried once."""
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{name} must be a whole number of seconds >= 1, got {value!r}")
    if grace_period <= heartbeat_interval:
        raise SpecError(f"grace_period ({grace_period} s) must be longer than heartbeat_interval ({heartbeat_interval} s), "
                        "or a running trial is failed between two of its heartbeats")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # the heartbeat is experimental in Optuna
            retry = _Retry(max_retry=1) if retry_lost else None
            if url.startswith(JOURNAL):
                path = _file(url, JOURNAL)
                backend: optuna.storages.BaseStorage = _JournalWithHeartbeat(
                    JournalFileBackend(str(path), _JournalLock(path)), heartbeat_interval, grace_period, retry)
                claim = _file_claim(path)
            elif url.startswith(SQLITE) and url != f"{SQLITE}:memory:":
                path = _file(url, SQLITE)
                claim = _file_claim(path)
                with claim(""):  # two workers creating one database's tables at once collide
                    # several workers on one SQLite file wait for each other's writes instead of failing
                    backend = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}},
                                         heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                         heartbeat_stale_trial_callback=retry)
            else:
                backend = RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                     heartbeat_stale_trial_callback=retry)
                claim = _advisory_claim(backend.engine) if not url.startswith(SQLITE) else _memory_claim()
    except SpecError:
        raise
    except OSError as e:  # the file's folder cannot be made, or its lock file written
        where = f" {e.filename}" if e.filename else ""
        raise SpecError(f"storage {url!r}: cannot create{where} ({e.strerror or e})") from None
    except (ValueError, ImportError, sqlalchemy.exc.SQLAlchemyError) as e:  # a malformed URL, no driver, no server
        raise SpecError(f"storage {url!r}: cannot open it ({str(e).splitlines()[0]})") from None
    return Storage(url, backend, heartbeat_interval, grace_period, retry, claim)


def memory_storage() -> Storage:
    """A study in this process's memory, without heartbeats: ``python -m search.compare``'s thousands
    of short searches, which nothing resumes."""
    return Storage("memory", optuna.storages.InMemoryStorage(), DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_GRACE_PERIOD, None,
                   _memory_claim())


def _memory_claim() -> Claim:
    lock = threading.Lock()  # an in-memory database has one process
    return lambda study_name: lock
