"""The pure core: config, planner, rollout state machine, analysis evaluation, state.

No I/O here (no asyncio, kr8s, aiohttp, Prometheus clients); enforced by import-linter."""
