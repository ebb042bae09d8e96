"""strategy=evolution: Real et al.'s regularized evolution as an Optuna sampler, on small
pure-Python objectives (no network): the children, the aging population, the tournament, seeds."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from archgen import SpecError
from search.strategies import make_strategy
from search.strategies.evolution import MUTATED, PARENT, EvolutionSampler, tournament

NAMES = ("a", "b", "c", "d", "e")
VALUES = [0, 1, 2, 3]


def _score(trial: optuna.Trial) -> float:
    return float(sum((i + 1) * trial.suggest_categorical(n, VALUES) for i, n in enumerate(NAMES)))


def _search(sampler: optuna.samplers.BaseSampler, n_trials: int, objective=_score,
            study: optuna.Study | None = None) -> list[FrozenTrial]:
    study = study or optuna.create_study(sampler=sampler, direction="maximize")
    study.sampler = sampler
    study.optimize(objective, n_trials=n_trials)
    return study.trials


def _differ(a: FrozenTrial, b: FrozenTrial) -> list[str]:
    """The parameters two points share and disagree on."""
    return sorted(n for n in a.params.keys() & b.params.keys() if a.params[n] != b.params[n])


def _window(trials: list[FrozenTrial], before: int, size: int) -> list[FrozenTrial]:
    """The population a trial was drawn from: the latest ``size`` complete trials before it."""
    return [t for t in trials[:before] if t.state == TrialState.COMPLETE][-size:]


def test_after_the_population_fills_each_child_is_a_member_with_one_parameter_changed():
    trials = _search(EvolutionSampler(population=8, tournament=3, seed=0), 40)
    assert all(PARENT not in t.system_attrs for t in trials[:8])  # the first P are random
    for t in trials[8:]:
        members = _window(trials, t.number, 8)
        parent = trials[t.system_attrs[PARENT]]
        assert parent in members
        assert _differ(t, parent) == [t.system_attrs[MUTATED]]
        assert any(len(_differ(t, m)) == 1 for m in members)
    # mutation changes every parameter over a run, not always the same one
    assert {t.system_attrs[MUTATED] for t in trials[8:]} == set(NAMES)


def test_the_population_ages_so_an_old_member_is_never_a_parent_however_good():
    # each trial scores worse than the one before: an elitist population would keep its first
    # members for ever; an aging one draws parents from the latest P only
    trials = _search(EvolutionSampler(population=5, tournament=5, seed=1), 30,
                     objective=lambda t: _score(t) - 1000 * t.number)
    for t in trials[5:]:
        assert t.number - 5 <= t.system_attrs[PARENT] < t.number
    # the oldest member is the best, and a sample of S = P draws usually holds it
    assert sum(t.system_attrs[PARENT] == t.number - 5 for t in trials[5:]) > len(trials[5:]) / 2


def test_the_tournament_takes_the_best_of_its_sample():
    members = [create_trial(state=TrialState.COMPLETE, value=float(v)) for v in (3, 9, 1, 7, 5, 2)]

    class Recording(random.Random):
        def choices(self, *args, **kwargs):
            self.drawn = super().choices(*args, **kwargs)
            return self.drawn

    rng = Recording(4)
    for _ in range(50):
        parent = tournament(members, 3, rng)
        assert len(rng.drawn) == 3 and parent is max(rng.drawn, key=lambda t: t.value)
    # one draw: any member; many draws: the best
    assert {tournament(members, 1, rng).value for _ in range(200)} == {3, 9, 1, 7, 5, 2}
    assert all(tournament(members, 60, rng).value == 9 for _ in range(20))


def test_a_pruned_or_failed_trial_is_never_a_parent_and_no_member():
    def objective(trial: optuna.Trial) -> float:
        score = _score(trial)
        if trial.params["a"] == 3:  # over the budget: pruned once timed
            raise optuna.TrialPruned()
        if trial.params["b"] == 0:
            raise RuntimeError("failed")
        return score

    study = optuna.create_study(sampler=EvolutionSampler(population=6, tournament=3, seed=2), direction="maximize")
    study.optimize(objective, n_trials=50, catch=(RuntimeError,))
    trials = study.trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    children = [t for t in trials if PARENT in t.system_attrs]
    assert children
    for t in children:
        assert trials[t.system_attrs[PARENT]] in _window(trials, t.number, 6)
    # random until P trials are evaluated, however many were pruned or failed on the way
    first = children[0].number
    assert len(_window(trials, first, 100)) == 6 and all(PARENT not in t.system_attrs for t in trials[:first])


def test_a_study_with_no_evaluated_trial_stays_random():
    def over_budget(trial: optuna.Trial) -> float:
        _score(trial)
        raise optuna.TrialPruned()

    trials = _search(EvolutionSampler(population=3, tournament=2, seed=0), 12, objective=over_budget)
    assert len(trials) == 12 and all(t.state == TrialState.PRUNED and not t.system_attrs for t in trials)
    assert len({tuple(t.params.values()) for t in trials}) > 1


def test_a_depth_change_adds_or_drops_parameters_and_changes_one_shared_one():
    def deep(trial: optuna.Trial) -> float:
        depth = trial.suggest_categorical("depth", [1, 2, 3])
        return float(depth + sum(trial.suggest_categorical(f"b{i}", [0, 1, 2]) for i in range(depth)))

    trials = _search(EvolutionSampler(population=4, tournament=2, seed=3), 60, objective=deep)
    children = [t for t in trials if PARENT in t.system_attrs]
    deeper = [t for t in children if t.system_attrs[MUTATED] == "depth"]
    assert deeper, "depth is one of the parameters a mutation changes"
    for t in children:
        parent = trials[t.system_attrs[PARENT]]
        assert _differ(t, parent) == [t.system_attrs[MUTATED]]
        assert set(t.params) == {"depth", *(f"b{i}" for i in range(t.params["depth"]))}


def _params(trials: list[FrozenTrial]) -> list[dict]:
    return [t.params for t in trials]


def test_one_seed_repeats_its_trials_and_a_resumed_study_goes_on_as_if_never_stopped():
    strategy = make_strategy("evolution", {"population": 5, "tournament": 2})
    once = _params(_search(strategy.make_sampler(7), 30))
    assert once == _params(_search(strategy.make_sampler(7), 30))
    assert once != _params(_search(strategy.make_sampler(8), 30))
    # a new sampler on the stored study (a resumed run, another worker): the history is the state
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    _search(strategy.make_sampler(7), 12, study=study)
    resumed = optuna.load_study(study_name="s", storage=storage)
    assert _params(_search(strategy.make_sampler(7), 18, study=resumed)) == once


@pytest.mark.parametrize(("settings", "message"), [
    ({"population": 1}, "evolution.population must be an integer >= 2"),
    ({"tournament": 0}, r"evolution.tournament must be an integer from 1 to evolution.population \(20\)"),
    ({"population": 4, "tournament": 5}, r"evolution.tournament must be an integer from 1 to evolution.population \(4\)"),
    ({"train_over_budget": "no"}, "evolution.train_over_budget must be true or false"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(SpecError, match=message):
        make_strategy("evolution", settings)
