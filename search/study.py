"""A search's Optuna study: its storage, its pruner, and its identity, which a resumed study must keep.

A study is created on the first run and loaded by every later one with the same ``study_name``
and ``storage`` (a resumed run, or another worker). Its identity is every setting that changes
what a trial's value means, recorded on the study when it is made: a run with other settings
is refused in one line naming the first setting that differs, before any trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import optuna
from omegaconf import DictConfig, OmegaConf

from archgen import SpecError
from archgen.checks import load_settings
from archgen.cli import launch_dir

from .data import labels_digest
from .problem import Problem
from .pruning import PRUNERS, PruningSettings, make_pruner
from .storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, Storage, open_storage
from .strategies import STRATEGIES, Strategy

# what changes where the data comes from but not what it is: workers whose files sit elsewhere,
# or that stream them, may join one study
LOCAL_DATA_SETTINGS = frozenset({"root", "download", "in_memory", "memory_limit_gb", "workers"})
IDENTITY_FORMAT = 3  # 3: trials carry heartbeats (a study of format 2 may hold a running trial nothing fails)
DEFAULT_STORAGE = Path("outputs/search/studies.db")


def section(cfg: DictConfig, key: str) -> dict[str, Any]:
    """A config section as plain data (empty where the config has none)."""
    return OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else {}  # type: ignore[return-value]


def file_digest(path: str | Path) -> str:
    """A file's content, as a short hash."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def study_identity(problem: Problem, strategy: Strategy, seed: int) -> dict[str, Any]:
    """Every setting that changes what a trial's value means, flat (``train.epochs``): the space
    (by name and content, never by path), the budget, the strategy and its settings, the
    evaluator's settings, the data's settings and labels, the latency protocol and the seed."""
    def flat(prefix: str, values: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        return {f"{prefix}.{k}": v for k, v in values.items() if k not in skip}

    evaluator = problem.evaluator
    # a target's table by its content, not by where this worker keeps it
    table = {"table": file_digest(problem.latency.table)} if problem.latency.table is not None else {}
    data: dict[str, Any] = {}
    if problem.data is not None and problem.data_settings is not None:
        data = {**flat("data", dataclasses.asdict(problem.data_settings), LOCAL_DATA_SETTINGS),
                "data.labels": labels_digest(problem.data)}
    identity = {
        "format": IDENTITY_FORMAT,
        "space": problem.space.name, "space.digest": problem.space.digest,
        "budget_ms": problem.budget_ms,
        "strategy": strategy.name, **flat(strategy.name, strategy.identity()),
        "evaluator": evaluator.name, **flat(evaluator.name, evaluator.identity()),
        **data,
        **flat("latency", {**dataclasses.asdict(problem.latency), **table}),
        "seed": seed,
    }
    return json.loads(json.dumps(identity, default=str))  # as the storage gives it back: lists, not tuples


def study_storage(cfg: DictConfig, strategy: Strategy) -> Storage:
    """``storage=`` (default: outputs/search/studies.db) with the heartbeat settings; a lost trial
    is retried where the strategy does not propose it again itself."""
    # the default is where the command started, not the run directory hydra.job.chdir=true moves into
    return open_storage(cfg.get("storage") or f"sqlite:///{(launch_dir() / DEFAULT_STORAGE).resolve()}",
                        cfg.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
                        cfg.get("grace_period", DEFAULT_GRACE_PERIOD), retry_lost=strategy.retries_lost)


def check_pruner(name: str, strategy: Strategy) -> None:
    """Refuse an unknown pruner, and a pruner for a strategy whose trials Optuna cannot prune."""
    if name not in PRUNERS:
        raise SpecError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")
    if name != "none" and not strategy.takes_pruner:
        takers = " or ".join(n for n in STRATEGIES if STRATEGIES.get(n).takes_pruner)
        raise SpecError(f"pruner={name} needs a single objective (strategy={takers}): Optuna cannot prune the trials "
                        f"of a multi-objective study; strategy={strategy.name} prunes the points over the budget instead")


def study_pruner(cfg: DictConfig, strategy: Strategy, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner named by ``pruner=`` (checked against the strategy), set up by ``pruning.*``;
    ``epochs``: the most epochs a trial reports."""
    name = str(cfg.get("pruner") or "none")
    check_pruner(name, strategy)
    return make_pruner(name, load_settings(PruningSettings, "pruning", section(cfg, "pruning")), epochs)


def open_study(cfg: DictConfig, problem: Problem, strategy: Strategy, pruner: optuna.pruners.BasePruner,
               run_name: str) -> tuple[optuna.Study, Storage]:
    """Create the study, or load it to resume; a study made with other settings is refused.
    ``run_name`` names a new study when ``study_name`` is not set."""
    storage = study_storage(cfg, strategy)
    name = cfg.get("study_name") or f"{problem.space.name}-{strategy.name}-{problem.budget_ms:g}ms-{run_name}"
    identity = study_identity(problem, strategy, cfg.seed)
    sampler = strategy.make_sampler(cfg.seed)
    try:
        study = optuna.create_study(study_name=name, storage=storage.backend, sampler=sampler, pruner=pruner,
                                    directions=list(strategy.directions), load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
        study = optuna.load_study(study_name=name, storage=storage.backend, sampler=sampler, pruner=pruner)
    check_identity(study, identity)
    return study, storage


def check_identity(study: optuna.Study, identity: Mapping[str, Any]) -> None:
    """Record ``identity`` on a new study; refuse, naming the first setting that differs, a study
    that holds another one."""
    name = study.study_name
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        study.set_user_attr("identity", dict(identity))
    elif recorded.get("format") != IDENTITY_FORMAT:
        raise SpecError(f"study {name!r} was created by an earlier archgen, which recorded too few of its settings "
                        "to check that a trial means the same now; choose another study_name")
    elif recorded != identity:
        changed = next(k for k in [*identity, *recorded] if recorded.get(k, "(unset)") != identity.get(k, "(unset)"))
        raise SpecError(
            f"study {name!r} was created with {changed}={recorded.get(changed, '(unset)')!r}, not "
            f"{identity.get(changed, '(unset)')!r}; resume it with its settings or choose another study_name"
        )
