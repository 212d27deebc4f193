"""The reconciler's analysis: runs while the rollout carries canary traffic, on the leader only.

Reports judged under another spec or for another step are not shown to decide(); the runner's
`for:` breach clocks go into the state, and come back from it after a restart or failover.
"""

from __future__ import annotations

import asyncio

from controller.core.state import BreachClocks, Phase, RolloutState
from controller.core.status import iso
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner, restored
from controller.shell.reconciler.view import ReconcilerView

ANALYSIS_PHASES = (Phase.PROGRESSING, Phase.HOLDING, Phase.FLIPPING, Phase.BAKING, Phase.PAUSED)


class ReconcilerAnalysis(ReconcilerView):
    """The analysis a rollout's reconciler runs: its runner, its reports, its breach clocks."""

    async def _on_report(self, report: AnalysisReport) -> None:
        self._report = report
        self.lag.evaluation(
            self.clock() - report.summary.at, self.spec.step_analysis(report.step).interval
        )
        if report.demand is not None and report.demand.value is not None:
            window = self.spec.step_analysis(report.step).window
            self._demand.add(report.summary.at, report.demand.value, window)
        for m in report.summary.metrics:
            self.metrics.verdicts.labels(
                self.spec.namespace, self.spec.name, m.name, m.verdict.value
            ).inc()
            if m.value is not None:
                self.metrics.analysis_value.labels(
                    self.spec.namespace, self.spec.name, m.name, "canary"
                ).set(m.value)
            if m.stable is not None:
                self.metrics.analysis_value.labels(
                    self.spec.namespace, self.spec.name, m.name, "stable"
                ).set(m.stable)
        self.wake.set()

    def _breach_clocks(self, state: RolloutState) -> BreachClocks | None:
        """The runner's `for:` clocks, for the state to carry (None without a running analysis)."""
        runner = self._runner
        if runner is None or state.phase not in ANALYSIS_PHASES:
            return None
        since = runner.breach_since
        return BreachClocks(state.attempt, state.step, since) if since else None

    def _sync_runner(self, state: RolloutState | None) -> None:
        """Run analysis while the rollout carries canary traffic; judge the state's step."""
        # Only the leader queries: a standby would double the load on Prometheus.
        active = (
            state is not None
            and state.phase in ANALYSIS_PHASES
            and not self._stopping
            and self.may_write()
        )
        if self.provider is None or not (
            self.spec.analysis.metrics or self.spec.analysis.capacity_gate
        ):
            return
        if active and state is not None:
            step = min(state.step, len(self.spec.steps) - 1)
            if self._runner is None:
                # After a restart or failover the breach clocks go on where they were (same
                # attempt and step only: anything else is judged afresh).
                clocks = state.breach
                previous = None
                if clocks is not None and (clocks.attempt, clocks.step) == (
                    state.attempt,
                    state.step,
                ):
                    previous = restored(clocks.since, self.clock())
                    self._log.info("breach clocks restored", breach=clock_fields(state))
                self._runner = AnalysisRunner(
                    self.spec,
                    self.provider,
                    self._on_report,
                    step=step,
                    previous=previous,
                    clock=self.clock,
                    spread=True,
                    gate=self.evaluation_gate,
                )
                self._runner.start()
            elif self._runner.step != step:
                self._runner.set_step(step)
        elif self._runner is not None:
            runner, self._runner = self._runner, None
            # The last attempt's verdicts and demand readings must not judge the next one.
            self._report = None
            self._demand.clear()
            asyncio.get_running_loop().create_task(
                runner.stop(), name=f"stop-runner:{self.spec.name}"
            )


def clock_fields(state: RolloutState) -> dict[str, str | None]:
    clocks = state.breach
    return {k: iso(t) for k, t in clocks.since.items()} if clocks is not None else {}
