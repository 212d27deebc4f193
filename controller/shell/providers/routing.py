"""One `Provider` for the daemon that hands each rollout to the provider its config names."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.config.model import Analysis, CapacityGate, Rollout
from controller.shell.providers.provider import Provider

ProviderFactory = Callable[[], Provider]


class RoutingProvider:
    """`analysis.provider: prometheus` or `direct`, each provider made on first use."""

    def __init__(self, make_prometheus: ProviderFactory, make_direct: ProviderFactory) -> None:
        self._factories = {"prometheus": make_prometheus, "direct": make_direct}
        self._providers: dict[str, Provider] = {}

    def _for(self, rollout: Rollout) -> Provider:
        kind = rollout.analysis.provider
        provider = self._providers.get(kind)
        if provider is None:
            provider = self._providers[kind] = self._factories[kind]()
        return provider

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: datetime | None = None
    ) -> dict[str, Measurement]:
        """Measure with the rollout's provider."""
        return await self._for(rollout).measure(rollout, analysis, tick=tick)

    async def capacity(
        self,
        rollout: Rollout,
        gate: CapacityGate,
        window: timedelta,
        *,
        tick: datetime | None = None,
    ) -> tuple[Sample, Sample]:
        """Capacity and demand from the rollout's provider."""
        return await self._for(rollout).capacity(rollout, gate, window, tick=tick)

    async def close(self) -> None:
        """Close every provider made."""
        for provider in self._providers.values():
            await provider.close()
        self._providers.clear()
