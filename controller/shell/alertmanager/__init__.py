"""The Alertmanager webhook: receive notifications, deliver them as commands."""
