"""`ptc status` for a terminal: the status documents as rich tables and text."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.core.status import iso, parse_iso
from controller.shell.lag import lag_caption

VERDICT_MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?", "error": "!"}


PHASE_STYLE = {
    "completed": "green",
    "rolled-back": "red",
    "rolling-back": "red",
    "failed": "red",
    "paused": "yellow",
    "holding": "yellow",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_cell(doc: Mapping[str, Any]) -> Text:
    analysis = doc.get("analysis") or {}
    text = Text()
    for i, m in enumerate(analysis.get("metrics") or ()):
        if i:
            text.append("\n")
        verdict = m.get("verdict") or ""
        style = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
        text.append(f"{VERDICT_MARK.get(verdict, ' ')} ", style=style)
        text.append(f"{m['name']} {_fmt(m.get('value'))} {m.get('threshold') or ''}")
    return text


def _hold_cell(doc: Mapping[str, Any], now: datetime) -> Text:
    hold = doc.get("hold")
    if not hold:
        return Text("-")
    until = parse_iso(hold["until"])
    left = max(0, int((until - now).total_seconds())) if until else 0
    filled = round(float(hold["progress"]) * 10)
    text = Text("█" * filled, style="cyan")
    text.append("░" * (10 - filled), style="dim")
    text.append(f" {left}s left")
    return text


def _weight_cell(weight: Mapping[str, Any]) -> str:
    cell = f"{_fmt(weight.get('desired'))}% / {_fmt(weight.get('actual'))}%"
    if weight.get("observed") is not None:
        cell += f"\nrequests {_fmt(weight['observed'])}%"
    return cell


def status_table(docs: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """The rollouts as one table: phase, step, weight, hold, analysis, what it waits on."""
    table = Table(
        title=f"ptc rollouts at {iso(now)}",
        title_justify="left",
        expand=False,
        caption=lag_caption(docs),
        caption_justify="left",
    )
    columns = ("rollout", "phase", "driver", "step", "weight d/a", "hold", "analysis", "waiting on")
    for col in columns:
        # the rollout's names stay whole: people search the output for them
        table.add_column(col, overflow="fold", no_wrap=col == "rollout")
    for doc in docs:
        phase = doc.get("phase") or "-"
        step = doc.get("step")
        steps = doc.get("steps") or 0
        if step is None:
            step_text = "-"
        elif not steps:  # a state from before ptc recorded the step count
            step_text = str(step + 1)
        else:
            step_text = "flip" if step >= steps else f"{step + 1}/{steps}"
        weight = doc.get("weight") or {}
        table.add_row(
            f"{doc['namespace']}/{doc['name']}\n{doc['stable']} → {doc['canary']}",
            Text(phase, style=PHASE_STYLE.get(phase, "cyan")),
            doc.get("writer") or "-",  # the replica that wrote the state: who drives it
            step_text,
            _weight_cell(weight),
            _hold_cell(doc, now),
            _metrics_cell(doc),
            Text(f"PROBLEM: {doc['problem']}", style="bold red")
            if doc.get("problem")
            else doc.get("waiting") or doc.get("message") or "",
        )
    return table


def shards_table(controller: Mapping[str, Any]) -> Table:
    """A sharded controller's view: each shard's Lease and holder (``ptc status --controller``)."""
    me = controller.get("identity")
    table = Table(
        title=f"shards as {me} sees them ({len(controller.get('members') or [])} live replicas)",
        title_justify="left",
    )
    for col in ("shard", "lease", "holder", "rollouts"):
        table.add_column(col, overflow="fold")
    for shard in controller.get("shards") or []:
        holder = shard.get("holder") or "-"
        table.add_row(
            str(shard["shard"]),
            shard["lease"],
            Text(holder, style="bold") if holder == me else holder,
            str(shard.get("rollouts", 0)),
        )
    return table


def decisions_table(doc: Mapping[str, Any], limit: int = 5) -> Table:
    """The rollout's latest decisions (and why the full history is missing, when it is)."""
    history = doc.get("history")
    problem = history.get("problem") if isinstance(history, Mapping) else None
    table = Table(
        title=f"{doc['name']}: last decisions",
        title_justify="left",
        caption=str(problem) if problem else None,
        caption_justify="left",
    )
    for col in ("at", "step", "decision", "by", "reason"):
        table.add_column(col, overflow="fold")
    for d in (doc.get("decisions") or [])[-limit:]:
        at = (d.get("at") or "")[11:19]
        step = d.get("step")
        table.add_row(
            at, str(step + 1 if step is not None else "-"), d["decision"], d["by"], d["reason"]
        )
    return table


def render_text(
    docs: Sequence[Mapping[str, Any]], now: datetime, *, width: int = 140, color: bool = False
) -> str:
    """The status view as plain text (snapshot tests, non-TTY output)."""
    console = Console(
        width=width, record=True, color_system="standard" if color else None, file=io.StringIO()
    )
    console.print(status_table(docs, now))
    for doc in docs:
        console.print(decisions_table(doc))
    return console.export_text()
