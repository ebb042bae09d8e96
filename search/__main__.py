"""``python -m search``: the best architecture of a space within a latency budget, and the evidence.

    python -m search budget_ms=30
    python -m search strategy=pareto latency=lut evaluator=naswot n_trials=200
    python -m search study_name=my-study storage=sqlite:///studies.db     # run again to resume
    python -m search -m budget_ms=10,20,30

The command alone: the config (``conf/search.yaml``), the run (``search.pipeline.run``) and the
exit codes: 0 when the search is written up, 2 for bad input (one line, before any trial), 130
after Ctrl-C (the study and the outputs so far are saved).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from archgen.cli import check_choices, hydra_command, import_command_line_modules, path_component, register_path_component
from archgen.zoo import CONF_DIR

from .evaluators import EVALUATORS
from .pipeline import PROG, run
from .pruning import PRUNERS
from .strategies import STRATEGIES



def run_name(space: Any, strategy: Any, budget_ms: Any) -> str:
    """The run directory's name after its time: the space's file stem (never its path, so that the
    directory stays under outputs/), the strategy, the budget and this process's id (two workers
    started in the same second on one study get a directory each)."""
    return "_".join(path_component(part) for part in (Path(str(space)).stem, strategy, f"{budget_ms}ms", os.getpid()))


def register_resolvers() -> None:
    """The resolvers conf/search.yaml's run and sweep directories use."""
    if not OmegaConf.has_resolver("search_run_name"):
        OmegaConf.register_new_resolver("search_run_name", run_name)
    register_path_component()


def main() -> None:
    register_resolvers()
    argv = sys.argv[1:]
    import_command_line_modules(PROG, argv)  # a user's strategy or evaluator registers itself there
    check_choices(PROG, argv, "strategy", STRATEGIES.names())
    check_choices(PROG, argv, "evaluator", EVALUATORS.names())
    check_choices(PROG, argv, "pruner", list(PRUNERS))
    check_choices(PROG, argv, "data", sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml")))
    hydra_command(PROG, "search", run, lambda out_dir: (
        f"the study is saved, run again with the same study_name to resume (outputs so far in {out_dir})"))()


if __name__ == "__main__":
    main()
