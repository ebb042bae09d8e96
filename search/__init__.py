"""Architecture search under a latency budget (MnasNet, NSGA-II Pareto search, NetAdapt) over archgen specs.

    python -m search budget_ms=30
    python -m search strategy=pareto latency=lut evaluator=naswot n_trials=100
"""
