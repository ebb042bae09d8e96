"""Many workers on one study (``search.storage``, ``search.trials``): the claim that ends a
study with exactly ``n_trials`` trials, the heartbeat that fails a lost worker's trial and retries
it, Ctrl-C, on SQLite, Optuna's journal file and a real PostgreSQL server."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import archgen
from search.storage import open_storage
from search.trials import INTERRUPTED, ask, claim, fail_reason, finished, run_trial

from .conftest import fast_overrides

REPO = Path(__file__).resolve().parents[2]
STORAGES = ["sqlite", "journal", "postgresql"]
# a trial of a few seconds (a short training), so that a worker can be caught in the middle of one
SLOW_TRIALS = ("evaluator=train", "train.epochs=2", "train.threads=1", "fresh_seeds=0", "baselines=false")


@pytest.fixture
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    if request.param == "journal":
        return f"journal:///{tmp_path / 'studies.log'}"
    return request.getfixturevalue("postgresql_url")  # one server for the session: study names differ by test


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url).backend)


def _search_args(space_file: Path, tmp_path: Path, url: str, *extra: str) -> list[str]:
    return [a for a in fast_overrides(space_file, tmp_path, *extra) if not a.startswith("storage=")] + [f"storage={url}"]


def _wait_for(condition, timeout: float = 240.0, every: float = 0.05):
    """``condition()``'s first truthy value, polled; None past the timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = condition()
        except KeyError:  # the study is not created yet
            got = None
        if got:
            return got
        time.sleep(every)
    return None


@pytest.mark.parametrize("storage_url", STORAGES, indirect=True)
def test_a_trial_whose_heartbeat_stopped_is_failed_as_lost_and_retried_once_with_its_parameters(storage_url, tmp_path):
    name = f"lost-{tmp_path.name}"
    gone = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=name, storage=gone.backend)
    x = ask(study, gone).suggest_int("x", 0, 1000)  # a claimed trial, one heartbeat, then its worker is gone

    here = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    mine = optuna.load_study(study_name=name, storage=here.backend)
    started = time.monotonic()
    retry = claim(mine, here, n_trials=1)  # nothing new to claim: it waits, and the lost trial comes back
    waited = time.monotonic() - started
    assert retry is not None and retry.number == 1 and 2 <= waited < 30
    assert retry.suggest_int("x", 0, 1000) == x
    assert run_trial(mine, here, retry, lambda t: 0.5).state == TrialState.COMPLETE
    assert claim(mine, here, n_trials=1) is None  # the retry counts in the lost trial's place

    trials = mine.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert fail_reason(trials[0], trials) == "worker lost (no heartbeat); retried as trial 1"
    assert finished(mine) == 1


def test_a_worker_whose_trial_was_failed_as_lost_while_it_ran_drops_its_result_and_goes_on(tmp_path, capsys):
    here = open_storage(f"journal:///{tmp_path / 'studies.log'}")
    study = optuna.create_study(study_name="taken", storage=here.backend)
    trial = ask(study, here)

    def objective(t: optuna.Trial) -> float:
        study.tell(t.number, state=TrialState.FAIL)  # another worker, which saw no heartbeat for grace_period
        t.set_user_attr("latency_ms", 1.0)  # refused: the trial has ended
        return 0.5

    assert run_trial(study, here, trial, objective).state == TrialState.FAIL
    assert "trial 0 was failed by another worker as lost" in capsys.readouterr().err
    assert "latency_ms" not in study.trials[0].user_attrs


def test_a_killed_writer_leaves_no_journal_lock_behind(tmp_path):
    """Optuna's default journal lock, a symlink, outlives a killed writer for 30 s and stalls every
    heartbeat meanwhile; archgen's is an OS file lock."""
    log = tmp_path / "studies.log"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from search.storage import _JournalLock; _JournalLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(log)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(timeout=30)
    here = open_storage(f"journal:///{log}")
    started = time.monotonic()
    optuna.create_study(study_name="after", storage=here.backend)  # a write under the journal's lock
    assert time.monotonic() - started < 5


def test_heartbeat_settings_and_an_unknown_storage_are_one_line(tmp_path):
    with pytest.raises(archgen.SpecError, match=r"^grace_period \(30 s\) must be longer than heartbeat_interval \(30 s\)"):
        open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=30, grace_period=30)
    with pytest.raises(archgen.SpecError, match=r"^heartbeat_interval must be a whole number of seconds >= 1, got 0\.5$"):
        open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=0.5)  # type: ignore[arg-type]
    with pytest.raises(archgen.SpecError, match=r"^storage 'nosuch://x': cannot open it \(") as err:
        open_storage("nosuch://x")
    assert "\n" not in str(err.value)
    with pytest.raises(archgen.SpecError, match=r"^storage 'journal:///': no file named after 'journal:///'$"):
        open_storage("journal:///")


@pytest.mark.parametrize("storage_url", STORAGES, indirect=True)
def test_three_workers_one_killed_mid_trial_end_with_exactly_n_trials_and_its_trial_retried(storage_url, space_file,
                                                                                            tmp_path):
    n_trials, name = 6, f"kill-{tmp_path.name}"
    args = _search_args(space_file, tmp_path, storage_url, f"study_name={name}", f"n_trials={n_trials}",
                        "heartbeat_interval=1", "grace_period=3", *SLOW_TRIALS)
    started = time.monotonic()
    workers = {}
    for i in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / f'w{i}'}"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers[proc.pid] = proc

    def running_trial():
        for t in _load(storage_url, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if pid in workers:
                return t.number, pid
        return None

    victim = _wait_for(running_trial)
    assert victim is not None, [p.communicate() for p in workers.values()]
    lost, pid = victim
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    workers.pop(pid).wait(timeout=30)
    for proc in workers.values():
        try:
            _, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in workers.values():
                p.kill()
            pytest.fail("a worker did not end: " + " | ".join(p.communicate()[1][-800:] for p in workers.values()))
        assert proc.returncode == 0, err
    wall = time.monotonic() - started

    trials = _load(storage_url, name).get_trials()
    assert sorted(t.number for t in trials) == list(range(n_trials + 1))  # none lost, none twice
    assert trials[lost].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [lost]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    # with the parameters it had drawn (a worker killed while it drew them had drawn only some)
    assert retries[0].params.items() >= trials[lost].params.items()
    others = [t for t in trials if t.number != lost]
    assert len(others) == n_trials and all(t.state == TrialState.COMPLETE for t in others)
    detected = (trials[lost].datetime_complete - trials[lost].datetime_start).total_seconds()
    # every survivor waited for the retry, so each one's trials.csv holds the whole study
    tables = [list(csv.DictReader(p.open())) for p in sorted(tmp_path.glob("w*/trials.csv"))]
    assert len(tables) == 2
    for rows in tables:
        assert len(rows) == n_trials + 1
        assert rows[lost]["fail_reason"] == f"worker lost (no heartbeat); retried as trial {retries[0].number}"

    # resuming with the same n_trials finds the study done and adds nothing
    r = subprocess.run([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / 'resume'}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n_trials} of {n_trials} trials done" in r.stdout
    assert len(_load(storage_url, name).get_trials()) == n_trials + 1
    print(f"\n{storage_url.split(':')[0]}: {n_trials} trials + 1 lost, 3 workers, one killed "
          f"{killed_at - started:.1f} s in; lost trial failed {detected:.1f} s after it started and retried as trial "
          f"{retries[0].number}; {wall:.1f} s in all")


def test_a_second_ctrl_c_fails_the_running_trial_as_interrupted_and_it_does_not_use_up_n_trials(space_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = _search_args(space_file, tmp_path, url, "study_name=c2", "n_trials=1", *SLOW_TRIALS, "train.epochs=8")
    proc = subprocess.Popen([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = _wait_for(lambda: _load(url, "c2").get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    assert running, proc.communicate()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; the study is saved" in err
    [stopped] = _load(url, "c2").get_trials()
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == INTERRUPTED

    r = subprocess.run([sys.executable, "-m", "search", *args, f"hydra.run.dir={tmp_path / 'again'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "study c2: 0 of 1 trials done" in r.stdout  # the interrupted trial did not use up the one
    trials = _load(url, "c2").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
