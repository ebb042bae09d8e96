"""``python -m archgen.benchmark``'s quick form: every runtime's candidates timed side by side,
each of ours against the reference in the same runtime (the figures themselves are the command's)."""

from __future__ import annotations

import math

from archgen import benchmark as command
from archgen.benchmark import COMPARISONS, main


def test_each_of_ours_is_timed_against_the_reference_in_the_same_runtime_and_the_command_prints_a_row(capsys,
                                                                                                     monkeypatch):
    results = []
    real = command.benchmark
    monkeypatch.setattr(command, "benchmark", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    main(["--models", "mbv3_small", "--rounds", "3", "--warmup", "1", "--runtimes", "eager", "onnxruntime"])
    [r] = results
    assert set(r) == {"reference_ms", "eager_ms", "deploy_ms", "reference_ort_ms", "ort_ms",
                      "eager_ratio", "deploy_ratio", "ort_ratio"}
    assert all(math.isfinite(v) and v > 0 for v in r.values())
    assert COMPARISONS["ort"] == ("reference_ort", 1.00) and COMPARISONS["deploy"] == ("reference", 0.80)
    out = capsys.readouterr().out.splitlines()
    assert "ratios: ours / the reference in the same runtime" in out[0]
    assert out[1].split() == ["model", "reference", "ours", "ratio", "ours,", "deployed", "ratio",
                              "reference,", "ORT", "ours,", "ORT", "ratio"]
    assert out[3].startswith("mbv3_small") and f"{r['ort_ratio']:.3f}" in out[3] and f"{r['eager_ratio']:.3f}" in out[3]
    assert out[-1].startswith("goals: ours <= 1.02 x reference, ours, deployed <= 0.8 x reference, ours, ORT <= 1.0 x "
                              "reference, ORT: ")
