"""What can stop a report, and which exit code each means to the CLI."""

from __future__ import annotations


class ReportError(Exception):
    """The report could not be made (runtime failure: exit 1); the message says why."""


class BadReportRequest(ReportError):
    """The request cannot be satisfied as given (bad input: exit 2), e.g. an unknown rollout."""
