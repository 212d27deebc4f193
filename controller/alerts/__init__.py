"""Alertmanager-driven rollback: matchers, the webhook payload, routing alerts to rollouts.

`matchers` and `routing` are pure (no I/O); the HTTP side is `controller.server`, the delivery
of a command to a rollout `controller.alerts.deliver`.
"""
