"""One rollout's reconciler: observe from the caches, `decide()`, execute the one action, repeat.

Woken by watch events (its Deployments, their Pods, its Service and EndpointSlices), analysis
results and timers; it never polls the API server. Reads come from the informers' caches, every
reconcile. After our own write, its response is trusted over the cache only while the cache is
older than the write (an *expectation*, see :mod:`controller.shell.kube.expectations`): a lagging
cache never makes the reconciler repeat an action, and no local copy outlives the write's watch
echo, whether that echo arrives before, with or after the response — so a command annotation written
after our write is seen as soon as the watch delivers it. The state goes to the Service
annotation before anything acts on it; a scale is an absolute count, so repeating one after a
crash is harmless.

:class:`RolloutReconciler` is built in layers, one module each: ``view`` (wiring, the state, the
caches' view, status), ``analysis`` (the runner, its reports and breach clocks), ``actions`` (the
one action of a decision, the state write, the Event), ``claim`` (a new leader's claim before it
acts: the fence across objects) and ``loop`` (run, reconcile, requeue, spec reloads).
"""

from controller.shell.reconciler.actions import StaleView
from controller.shell.reconciler.analysis import ANALYSIS_PHASES
from controller.shell.reconciler.claim import CLAIM_ANNOTATION, claim_mark, claim_objects
from controller.shell.reconciler.loop import (
    HISTORY_FLUSH_S,
    STALE_VIEW_WAIT,
    RolloutReconciler,
    command_pending,
)
from controller.shell.reconciler.view import RESYNC_SECONDS

__all__ = [
    "ANALYSIS_PHASES",
    "CLAIM_ANNOTATION",
    "HISTORY_FLUSH_S",
    "RESYNC_SECONDS",
    "STALE_VIEW_WAIT",
    "RolloutReconciler",
    "StaleView",
    "claim_mark",
    "claim_objects",
    "command_pending",
]
