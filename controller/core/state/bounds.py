"""The state as the annotation keeps it: bounded whatever the config and the history.

The API server refuses a Service whose annotations exceed 256 KiB (and then every state write
fails, the one starting a rollback included), and each patch is sent to every Service watcher.
So `compact` keeps the last `HISTORY_LIMIT` decisions with their reasons cut to `REASON_LIMIT`,
and metric readings only on the newest record that has them, as far as they fit
`METRICS_BUDGET`. The full history with every reading goes to a ConfigMap
(`controller.shell.history`).
"""

from __future__ import annotations

import json
from dataclasses import replace

from controller.core.state.model import HISTORY_LIMIT, MetricRecord, RolloutState

REASON_LIMIT = 200  # encoded bytes of a reason, message or other text the annotation keeps
METRICS_BUDGET = 3 * 1024  # encoded bytes of metric readings the newest record may carry
TAIL = 40  # characters a cut text keeps from its end (e.g. an alert command's " [alert-id]")


def size(value: object) -> int:
    """Bytes of `value` as compact UTF-8 JSON (how the API server counts them)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def cut_text(text: str, limit: int = REASON_LIMIT) -> str:
    """`text` with its middle replaced by an ellipsis until its JSON encoding fits `limit`.

    The end is kept: a command's id is appended to its reason, and duplicate alerts are
    recognised by it.
    """
    if size(text) <= limit:
        return text
    tail = text[-TAIL:] if size(text[-TAIL:]) <= limit // 2 else ""
    head = text[:limit]
    while (excess := size(head + "\u2026" + tail) - limit) > 0:
        head = head[: -max(1, excess // 6)]  # a character encodes to at most 6 bytes
    return head + "\u2026" + tail


def metric_json(m: MetricRecord) -> dict[str, object]:
    """A metric reading as a decision record stores it (detail cut to `REASON_LIMIT`)."""
    return {
        "name": m.name,
        "verdict": m.verdict,
        "value": m.value,
        "stable": m.stable,
        "threshold": m.threshold,
        "detail": cut_text(m.detail),
    }


def compact(state: RolloutState) -> RolloutState:
    """The state as the annotation keeps it: bounded whatever the history and the metrics.

    The last `HISTORY_LIMIT` records, reasons cut to `REASON_LIMIT`; metric readings on the
    newest record that has them only, as many as fit `METRICS_BUDGET` (in config order).
    """
    history = state.history[-HISTORY_LIMIT:]
    # The newest readings, wherever they are (`ptc status` shows them without a controller).
    newest = max((i for i, r in enumerate(history) if r.metrics), default=-1)
    records = []
    for i, r in enumerate(history):
        metrics: list[MetricRecord] = []
        if i == newest:
            used = 0
            for m in r.metrics:
                kept = replace(
                    m,
                    name=cut_text(m.name),
                    threshold=cut_text(m.threshold),
                    detail=cut_text(m.detail),
                )
                used += size(metric_json(kept))
                if used > METRICS_BUDGET:
                    break
                metrics.append(kept)
        records.append(
            replace(
                r,
                decision=cut_text(r.decision),
                reason=cut_text(r.reason),
                by=cut_text(r.by),
                metrics=tuple(metrics),
            )
        )
    return replace(state, message=cut_text(state.message), history=tuple(records))
