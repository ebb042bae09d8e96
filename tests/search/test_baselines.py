"""The width-scaled baseline's one search (``search.baselines.width_search``): the widest width
multiplier whose base is no slower than a target, by bisection."""

from __future__ import annotations

import math

import pytest

from search.baselines import BUDGET_STEP, MATCH_STEP, WIDTH_RANGE, width_search


def _counted(ratio):
    calls: list[float] = []

    def at(width: float) -> float:
        calls.append(width)
        return ratio(width)

    return at, calls


@pytest.mark.parametrize("fits_up_to", [0.1, 0.37, 1.0, 1.83, 2.95, 3.0])
def test_the_widest_width_on_the_grid_within_the_target_is_found(fits_up_to):
    at, calls = _counted(lambda w: w / fits_up_to)  # latency grows with width; ratio 1 at fits_up_to
    width, ratio = width_search(at, BUDGET_STEP)
    grid = [round(WIDTH_RANGE[0] + i * BUDGET_STEP, 3) for i in range(round((WIDTH_RANGE[1] - WIDTH_RANGE[0]) / BUDGET_STEP) + 1)]
    assert width == max(w for w in grid if w / fits_up_to <= 1) and ratio <= 1
    assert width == grid[-1] or (width + BUDGET_STEP) / fits_up_to > 1  # the next step is over
    assert len(calls) <= math.ceil(math.log2(len(grid))) + 1  # a bisection, not a scan


def test_nothing_fits_when_even_the_narrowest_base_is_slower():
    assert width_search(lambda w: 2.0 + w, BUDGET_STEP) is None


def test_with_a_tolerance_it_stops_at_the_first_width_within_it():
    at, calls = _counted(lambda w: w / 1.2345)
    width, ratio = width_search(at, MATCH_STEP, tolerance=0.03)
    assert abs(ratio - 1) <= 0.03 and calls[-1] == width
    assert len(calls) < math.ceil(math.log2((WIDTH_RANGE[1] - WIDTH_RANGE[0]) / MATCH_STEP))  # stopped early


def test_with_a_tolerance_but_no_width_within_it_the_widest_below_is_kept():
    # a step of latency at 1.0: below it the base is much faster, above it much slower
    width, ratio = width_search(lambda w: 0.5 if w < 1.0 else 1.5, MATCH_STEP, tolerance=0.03)
    assert ratio == 0.5 and width == pytest.approx(0.999)
