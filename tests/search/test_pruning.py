"""Pruning: trials report their accuracy after each epoch, and the study's pruner stops the unpromising."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from archgen import SpecError
from archgen.space import Space
from search.storage import open_storage
from search.data import DataSettings, load_data
from search.evaluators.train import TrainSettings, train
from search.pruning import PRUNERS, PruningSettings, make_pruner
from search.space import suggest
from search.strategies import STRATEGIES, make_strategy
from search.study import check_pruner
from search.trials import ask

from .conftest import fast_overrides, run_search
from .test_search import PNG

TRAIN = ["evaluator=train", "train.epochs=2", "train.batch_size=32", "baselines=false", "fresh_seeds=0"]


def _plant_a_perfect_trial(space_file, tmp_path, name: str) -> None:
    """A completed trial that reported accuracy 1.0 after epoch 1: the median every real trial falls short of."""
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = optuna.create_study(study_name=name, storage=storage.backend, direction="maximize")
    trial = ask(study, storage)
    suggest(trial, Space(space_file))
    trial.report(1.0, step=1)
    for key, value in {"accuracy": 1.0, "latency_ms": 1.0, "macs": 1, "num_params": 1, "eval_seconds": 0.0}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 1.0)


def _search(compose_search, space_file, tmp_path, out, *extra):
    args = [a for a in fast_overrides(space_file, tmp_path, "study_name=p", *extra) if not a.startswith(("evaluator=", "naswot."))]
    return run_search(compose_search, out, *args, *TRAIN, "pruner=median", "pruning.startup_trials=1")


def test_a_trial_pruned_at_its_first_report_is_recorded_and_the_study_goes_on(compose_search, space_file, tmp_path):
    _plant_a_perfect_trial(space_file, tmp_path, "p")
    out = tmp_path / "a"
    summary = _search(compose_search, space_file, tmp_path, out, "n_trials=3")
    study = optuna.load_study(study_name="p", storage=open_storage(f"sqlite:///{tmp_path / 'studies.db'}").backend)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in trials[1:]:
        assert t.user_attrs["pruned_at_epoch"] == 1 and list(t.intermediate_values) == [1]
        assert 0 <= t.user_attrs["pruned_accuracy"] < 1 and t.user_attrs["latency_ms"] > 0
        assert t.user_attrs["fail_reason"] == f"pruned by MedianPruner after epoch 1: accuracy {t.user_attrs['pruned_accuracy']:.4f}"
    # a pruned trial counts towards n_trials, never becomes the best, and shows in every output
    assert summary["trials"] == 3 and summary["pruned_early"] == 2 and summary["best_trial"] == 0
    rows = (out / "trials.csv").read_text().splitlines()
    header = rows[0].split(",")
    pruned_rows = [dict(zip(header, r.split(","))) for r in rows[1:] if ",PRUNED," in r]
    assert len(pruned_rows) == 2 and all(r["pruned_at_epoch"] == "1" for r in pruned_rows)
    assert (out / "intermediate.png").read_bytes().startswith(PNG)
    assert "2 pruned early by the pruner" in (out / "report.md").read_text()

    # resumed with more trials: the pruned trials stay as they were and the study goes on
    resumed = _search(compose_search, space_file, tmp_path, tmp_path / "b", "n_trials=4")
    again = optuna.load_study(study_name="p", storage=open_storage(f"sqlite:///{tmp_path / 'studies.db'}").backend).trials
    assert len(again) == 4 and [t.state for t in again[:3]] == [t.state for t in trials]
    assert [t.intermediate_values for t in again[:3]] == [t.intermediate_values for t in trials]
    assert resumed["trials"] == 4 and resumed["best_trial"] == 0


def test_reporting_after_each_epoch_changes_no_result():
    data = load_data(DataSettings(limit=200))
    spec = Space({"base": "mbv3_small", "per_block": {"k": [3, 5]}}, num_classes=10, in_chans=1, input_size=32).base
    settings = TrainSettings(epochs=3, batch_size=32, threads=1)
    reports: list[tuple[int, float]] = []
    reported = train(spec, data, settings, report=lambda epoch, acc: reports.append((epoch, acc)))
    plain = train(spec, data, settings)  # the extra validations touch no weight and no generator
    assert (reported.accuracies, reported.loss) == (plain.accuracies, plain.loss)
    assert [e for e, _ in reports] == [1, 2] and all(0 <= a <= 1 for _, a in reports)  # the last epoch is the result


@pytest.mark.parametrize(("name", "kind"), [("none", optuna.pruners.NopPruner), ("median", optuna.pruners.MedianPruner),
                                            ("sha", optuna.pruners.SuccessiveHalvingPruner),
                                            ("hyperband", optuna.pruners.HyperbandPruner)])
def test_each_pruner_is_optunas(name, kind):
    assert name in PRUNERS and isinstance(make_pruner(name, PruningSettings(), max_epochs=4), kind)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_a_strategy_takes_a_pruner_exactly_when_it_says_so(name):
    strategy = make_strategy(name)
    check_pruner("none", strategy)
    if strategy.takes_pruner:
        check_pruner("median", strategy)
        assert len(strategy.directions) == 1  # Optuna prunes single-objective studies only
    else:
        with pytest.raises(SpecError, match=f"pruner=median needs a single objective .*; strategy={name} prunes"):
            check_pruner("median", strategy)


def test_pareto_takes_no_pruner_and_bad_settings_are_named():
    assert not make_strategy("pareto").takes_pruner and make_strategy("mnasnet").takes_pruner
    with pytest.raises(SpecError, match="unknown pruner 'asha'; known: none, median, sha, hyperband"):
        check_pruner("asha", make_strategy("mnasnet"))
    with pytest.raises(SpecError, match="pruning.reduction_factor must be an integer >= 2, got 1"):
        PruningSettings(reduction_factor=1)
