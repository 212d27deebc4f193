"""Config hot reload for `ptc run`: watch the file, apply a valid change, refuse a bad one.

A rollout added to the file gets a reconciler; one removed is let go, unless it is moving
traffic: then it is driven to a safe end on the spec it started with (`_unconfigure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from typing import TYPE_CHECKING, Any

import structlog

from controller.core.config import ConfigError, load_config
from controller.core.config.model import Rollout
from controller.core.config.yamlread import MAX_BYTES
from controller.core.state import Phase, RolloutState, StateError, read_state
from controller.shell.reconciler import RolloutReconciler

if TYPE_CHECKING:
    from controller.shell.daemon import Controller

log = structlog.get_logger("ptc.daemon")

RELOAD_INTERVAL = 2.0  # seconds between looks at the config file
# Nothing has moved yet in these phases: a rollout removed from the config is simply let go.
_NOT_STARTED = (Phase.PENDING, Phase.PREFLIGHT)


class ConfigReloader:
    """Applies config file changes to a running :class:`~controller.shell.daemon.Controller`."""

    def __init__(self, controller: Controller) -> None:
        self._ctl = controller
        self._config_digest = _digest_file(controller.options.config_source)
        # In flight but gone from the config: driven to a safe end, then let go.
        self._unconfigured: set[tuple[str, str]] = set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Look at the config file every few seconds until `stop`; reload when it changed.

        A ConfigMap mount changes by swapping a symlink, so the file is re-read through its
        path each time and compared by content, not by inode or mtime. Nothing a file holds
        ends this loop: whatever goes wrong, the last good config stays and the loop goes on.
        """
        path = self._ctl.options.config_source
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RELOAD_INTERVAL)
            if stop.is_set():
                break
            try:
                digest = await asyncio.to_thread(_digest_file, path)
                if digest is None or digest == self._config_digest:
                    continue
                self._config_digest = digest
                await self.reload(path)
            except Exception as exc:  # the loop must outlive any file; CancelledError passes
                log.error("config reload failed; keeping the last good config", error=repr(exc))

    async def reload(self, path: str) -> bool:
        """Load `path` and apply it; False (last good config kept) if it is refused."""
        ctl = self._ctl
        try:
            # A big config takes a moment to parse: not on the event loop.
            loaded = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            await self._reject(path, [str(p) for p in exc.problems])
            return False
        except Exception as exc:  # load_config raises only ConfigError; this is the backstop
            log.error("config reload crashed in the loader", file=path, exc_info=exc)
            await self._reject(path, [f"{path}: cannot be checked: {exc!r}"])
            return False
        ctl.last_reload_error = None
        ctl.generation += 1
        ctl.metrics.config_generation.set(ctl.generation)
        new = {(r.namespace, r.name): r for r in loaded.config.rollouts}
        existing = {(r.spec.namespace, r.spec.name): r for r in ctl.reconcilers}
        for key, reconciler in existing.items():
            try:
                await self._reload_one(reconciler, new.get(key))
            except Exception as exc:  # one rollout's trouble must not stop the others'
                log.error("applying the config failed", rollout=key[1], exc_info=exc)
        for key, spec in new.items():
            if key not in existing and (
                not ctl.options.namespaces or spec.namespace in ctl.options.namespaces
            ):
                try:
                    await ctl.add_rollout(spec)
                except Exception as exc:
                    log.error("adding a rollout failed", rollout=spec.name, exc_info=exc)
        return True

    async def _reject(self, path: str, problems: list[str]) -> None:
        self._ctl.last_reload_error = "\n".join(problems)
        log.error(
            "config reload refused; keeping the last good config", file=path, problems=problems
        )
        with contextlib.suppress(Exception):
            await self._ctl.controller_event(
                "Warning",
                "ConfigRejected",
                f"config reload refused, last good config (generation {self._ctl.generation}) "
                f"stays in force: " + "; ".join(problems)[:900],
            )

    async def _reload_one(self, reconciler: RolloutReconciler, spec: Rollout | None) -> None:
        name, namespace = reconciler.spec.name, reconciler.spec.namespace
        if spec is None:
            await self._unconfigure(reconciler)
            return
        if (namespace, name) in self._unconfigured:
            self._unconfigured.discard((namespace, name))
            await reconciler.emit(
                "Normal", "Configured", "the rollout is in the config again: managed as usual"
            )
        outcome = reconciler.update_spec(spec, self._ctl.generation)
        if outcome == "applied":
            await reconciler.emit(
                "Normal", "ConfigApplied", f"config generation {self._ctl.generation} applied"
            )
        elif outcome == "deferred":
            await reconciler.emit(
                "Warning",
                "ConfigDeferred",
                f"config generation {self._ctl.generation} names a new stable/canary; refused "
                "while the rollout in flight runs: it applies once that one has ended "
                "(abort it to apply sooner)",
            )
        log.info("config reloaded", rollout=name, outcome=outcome, generation=self._ctl.generation)

    async def _unconfigure(self, reconciler: RolloutReconciler) -> None:
        """A rollout gone from the config: one in flight ends on its spec, else it is let go.

        Removing a rollout from the file must never abandon one that is moving traffic: it is
        driven to a safe end (completion or rollback, analysis included) on the spec it
        started with, unless a person aborts it; then it is no longer managed.
        """
        key = (reconciler.spec.namespace, reconciler.spec.name)
        state = _state_of(reconciler)
        if state is not None and state.phase not in _NOT_STARTED and not state.phase.terminal:
            if key not in self._unconfigured:
                self._unconfigured.add(key)
                log.warning(
                    "rollout removed from the config while in flight; driving it to a safe end "
                    "on the spec it started with",
                    rollout=key[1],
                    namespace=key[0],
                    phase=state.phase.value,
                    step=state.step,
                )
                await reconciler.emit(
                    "Warning",
                    "NoLongerConfigured",
                    f"rollout removed from the config while {state.phase.value} (step "
                    f"{state.step + 1}): it is driven to a safe end on the spec it started "
                    "with, analysis included; abort it to roll back now",
                )
            return
        self._retire(reconciler)

    def _retire(self, reconciler: RolloutReconciler) -> None:
        key = (reconciler.spec.namespace, reconciler.spec.name)
        log.warning(
            "rollout removed from the config; no longer managed (cluster left as it is)",
            rollout=key[1],
            namespace=key[0],
        )
        self._unconfigured.discard(key)
        self._ctl.remove_reconciler(reconciler)

    def on_service_event(self, reconciler: RolloutReconciler, svc: Any) -> None:
        """A Service event for `reconciler`: an unconfigured rollout that has ended is let go."""
        if not self._unconfigured:
            return
        if (reconciler.spec.namespace, reconciler.spec.name) not in self._unconfigured:
            return
        try:
            state = read_state(svc.annotations)
        except StateError:
            return
        if state is None or state.phase.terminal:
            self._retire(reconciler)


def _digest_file(path: str) -> str | None:
    """sha256 of the file's size and content; None when there is no file or it cannot be read.

    Reads at most one byte past the loader's limit: a file larger than that is refused
    whatever follows, and a huge file or a device must not be read whole.
    """
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read(MAX_BYTES + 1))
            digest.update(str(os.fstat(handle.fileno()).st_size).encode())
            return digest.hexdigest()
    except OSError:
        return None


def _state_of(reconciler: RolloutReconciler) -> RolloutState | None:
    svc = reconciler.service()
    if svc is None:
        return None
    try:
        return read_state(svc.annotations)
    except StateError:
        return None
