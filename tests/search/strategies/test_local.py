"""strategy=local: local search with random restarts as an Optuna sampler, on small pure-Python
objectives (no network): neighbours, moves to the best, restarts at local optima, the study's
history as its only state."""

from __future__ import annotations

import itertools

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.strategies import make_strategy
from search.strategies.local import CURRENT, MOVE, LocalSearchSampler

# a separable objective, 4 parameters x 3 values: the sum of per-parameter scores; its global
# optimum a=1, b=2, c=1, d=0 (14), every parameter at its best, is its only local optimum
WEIGHTS = {"a": [0, 5, 1], "b": [2, 0, 4], "c": [1, 3, 0], "d": [2, 1, 0]}
VALUES = [0, 1, 2]
OPTIMUM = {"a": 1, "b": 2, "c": 1, "d": 0}
SPACE = [dict(zip(WEIGHTS, values)) for values in itertools.product(VALUES, repeat=len(WEIGHTS))]


def _score(params: dict) -> float:
    return float(sum(WEIGHTS[n][v] for n, v in params.items()))


def _bumpy_score(params: dict) -> float:
    """Not separable: pairs of parameters that agree score, so there are several local optima."""
    a, b, c, d = (params[n] for n in WEIGHTS)
    return 3.0 * (a == b) + 3.0 * (c == d) + 2.0 * (b == c) + 0.1 * a + 0.01 * d


def _objective(score=_score):
    return lambda trial: score({n: trial.suggest_categorical(n, VALUES) for n in WEIGHTS})


def _search(sampler: optuna.samplers.BaseSampler, n_trials: int, objective=_objective(),
            study: optuna.Study | None = None) -> list[FrozenTrial]:
    study = study or optuna.create_study(sampler=sampler, direction="maximize")
    study.sampler = sampler
    study.optimize(objective, n_trials=n_trials)
    return study.trials


def _neighbours(params: dict) -> list[dict]:
    return [{**params, n: v} for n in params for v in VALUES if v != params[n]]


def _held(params: dict, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.params == params]


def _distinct(trials: list[FrozenTrial]) -> int:
    return len({tuple(sorted(t.params.items())) for t in trials})


def _climbs(trials: list[FrozenTrial]) -> list[list[FrozenTrial]]:
    """The trials split at each random (re)start: a trial with no current point."""
    climbs: list[list[FrozenTrial]] = []
    for t in trials:
        if CURRENT not in t.system_attrs:
            climbs.append([])
        climbs[-1].append(t)
    return climbs


def _done(point: dict, trials: list[FrozenTrial]) -> bool:
    """Every neighbour of ``point`` is among ``trials``."""
    return all(_held(p, trials) for p in _neighbours(point))


def _uphill(point: dict, trials: list[FrozenTrial], score) -> list[dict]:
    """Where steepest ascent from ``point`` stops, moving on from each point whose neighbourhood
    ``trials`` hold whole to its best neighbour while that is better (each of them, on a tie)."""
    if not _done(point, trials):
        return [point]
    top = max(score(p) for p in _neighbours(point))
    if top <= score(point):
        return [point]
    return [end for p in _neighbours(point) if score(p) == top for end in _uphill(p, trials, score)]


def _is_local_optimum(point: dict, trials: list[FrozenTrial], score) -> bool:
    return _done(point, trials) and all(score(p) <= score(point) for p in _neighbours(point))


@pytest.mark.parametrize("score", [_score, _bumpy_score])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_climb_evaluates_the_current_points_neighbours_moves_to_the_best_and_restarts_at_a_local_optimum(score, seed):
    trials = _search(LocalSearchSampler(seed=seed), 60, _objective(score))
    moved = 0
    for i, t in enumerate(trials):
        previous = trials[i - 1] if i else None
        if CURRENT not in t.system_attrs:  # a random (re)start: the climb before it ended at a local optimum
            if previous is not None:
                last = trials[previous.system_attrs.get(CURRENT, previous.number)].params
                assert any(_is_local_optimum(end, trials[:i], score) for end in _uphill(last, trials[:i], score))
            continue
        current = trials[t.system_attrs[CURRENT]]
        assert current.state == TrialState.COMPLETE
        changed = [n for n in WEIGHTS if t.params[n] != current.params[n]]
        assert changed == [t.system_attrs[MOVE][0]] and t.params[changed[0]] == t.system_attrs[MOVE][1]
        assert not _held(t.params, trials[:i])  # a neighbour the study holds is not evaluated again
        before = previous.system_attrs.get(CURRENT) if previous is not None else None
        if before is not None and before != current.number:  # a move, once the neighbourhood was done, to its best
            assert _done(trials[before].params, trials[:i]) and score(current.params) > score(trials[before].params)
            assert current.params in _uphill(trials[before].params, trials[:i], score)
            moved += 1
    assert moved and len(_climbs(trials)) >= 2  # 60 trials of 81 points take moves and more than one climb
    for climb in _climbs(trials):  # a climb never evaluates a point twice
        assert _distinct(climb) == len(climb)


@pytest.mark.parametrize("seed", range(5))
def test_on_a_separable_objective_the_first_climb_reaches_the_global_optimum(seed):
    trials = _search(LocalSearchSampler(seed=seed), 34)
    assert any(t.params == OPTIMUM for t in trials)
    # one climb: a start, at most 8 neighbours, then at most 6 new ones per move, 4 moves at most
    assert len(_climbs(trials)[0]) <= 1 + 8 + 4 * 6


def test_restarts_draw_points_the_study_does_not_hold():
    trials = _search(LocalSearchSampler(seed=3), 70, _objective(_bumpy_score))
    assert len(_climbs(trials)) >= 3
    assert _distinct(trials) == 70  # of 81 points


def test_a_pruned_neighbour_counts_as_evaluated_and_a_pruned_point_is_never_the_current_one():
    def objective(trial: optuna.Trial) -> float:
        score = _objective()(trial)
        if trial.params["b"] == 2:  # over the budget: pruned once timed
            raise optuna.TrialPruned()
        return score

    trials = _search(LocalSearchSampler(seed=4), 50, objective)
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    assert pruned
    assert all(t.system_attrs[CURRENT] not in pruned for t in trials if CURRENT in t.system_attrs)
    assert _distinct(trials) == 50  # not proposed again
    # the best feasible point (b = 0, the rest at their best) is found
    assert any(t.params == {**OPTIMUM, "b": 0} for t in trials)


def test_a_pruned_start_is_followed_by_another_and_a_fully_pruned_study_is_all_restarts():
    def over_budget(trial: optuna.Trial) -> float:
        _objective()(trial)
        raise optuna.TrialPruned()

    trials = _search(LocalSearchSampler(seed=0), 15, over_budget)
    assert all(t.state == TrialState.PRUNED and not t.system_attrs for t in trials)
    assert _distinct(trials) == 15


def test_neighbours_the_study_already_holds_are_not_evaluated_again_but_their_results_used():
    study = optuna.create_study(direction="maximize")
    start = {"a": 0, "b": 0, "c": 0, "d": 0}
    distributions = {n: CategoricalDistribution(VALUES) for n in WEIGHTS}
    for params in [start, *_neighbours(start)]:  # a whole neighbourhood evaluated by someone else
        study.add_trial(create_trial(params=params, distributions=distributions, value=_score(params)))
    best = max(_neighbours(start), key=_score)
    trials = _search(LocalSearchSampler(seed=5), 1, study=study)
    new = trials[-1]
    assert new.system_attrs[CURRENT] == _held(best, trials)[0].number  # it moved from the start without a trial
    assert new.params in _neighbours(best) and not _held(new.params, trials[:-1])


def test_a_depth_change_is_a_move_and_its_new_parameters_are_drawn():
    def deep(trial: optuna.Trial) -> float:
        depth = trial.suggest_categorical("depth", [1, 2, 3])
        return float(sum(trial.suggest_categorical(f"b{i}", [0, 1, 2]) for i in range(depth)) - depth)

    trials = _search(LocalSearchSampler(seed=6), 40, deep)
    moves = [t for t in trials if CURRENT in t.system_attrs]
    assert any(t.system_attrs[MOVE][0] == "depth" for t in moves)
    for t in moves:
        current = trials[t.system_attrs[CURRENT]]
        shared = t.params.keys() & current.params.keys()
        assert [n for n in shared if t.params[n] != current.params[n]] == [t.system_attrs[MOVE][0]]
        assert set(t.params) == {"depth", *(f"b{i}" for i in range(t.params["depth"]))}


def test_one_seed_repeats_its_trials_and_a_resumed_study_goes_on_as_if_never_stopped():
    strategy = make_strategy("local")
    once = [t.params for t in _search(strategy.make_sampler(7), 40, _objective(_bumpy_score))]
    assert once == [t.params for t in _search(strategy.make_sampler(7), 40, _objective(_bumpy_score))]
    assert once != [t.params for t in _search(strategy.make_sampler(8), 40, _objective(_bumpy_score))]
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    _search(strategy.make_sampler(7), 13, _objective(_bumpy_score), study=study)
    resumed = optuna.load_study(study_name="s", storage=storage)
    assert [t.params for t in _search(strategy.make_sampler(7), 27, _objective(_bumpy_score), study=resumed)] == once


def test_the_space_is_as_the_tests_say():
    assert max(SPACE, key=_score) == OPTIMUM and sum(_score(p) == _score(OPTIMUM) for p in SPACE) == 1
