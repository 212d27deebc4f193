"""A report judged under an earlier spec does not decide: a reload's thresholds count at once."""

from __future__ import annotations

import pytest

from controller.core.analysis.evaluate import AnalysisSummary, MetricResult, Verdict
from controller.core.state import Phase
from controller.shell.analysis_runner import AnalysisReport
from tests.unit.rollout_model import make_spec
from tests.unit.test_reconciler_echo import SPEC, state, world

# The same rollout target, other thresholds/timings: applied mid-rollout.
RELOADED = make_spec(analysis={"interval": "20s", "metrics": []})


@pytest.mark.parametrize("reloaded", [False, True])
async def test_a_fail_judged_under_the_old_spec_rolls_nothing_back_after_a_reload(
    reloaded: bool,
) -> None:
    reached = state()
    async with world(reached, stable=3, canary=1) as w:
        r = w.reconciler
        await r.reconcile_once()  # step 1 reached
        w.clock.step(5)
        metric = MetricResult("bad-gateway", Verdict.FAIL, 0.2, None, "<= 0.05", "0.2 > 0.05")
        summary = AnalysisSummary(w.clock(), Verdict.FAIL, (metric,))
        await r._on_report(AnalysisReport(SPEC.name, SPEC.spec_hash(), 0, summary))
        if reloaded:
            r.update_spec(RELOADED, 2)
        await w.deliver()
        w.clock.step(1)
        await r.reconcile_once()
        assert (w.state().phase is Phase.ROLLING_BACK) is not reloaded
