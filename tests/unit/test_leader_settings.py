"""LeaderSettings: defaults and the validation that keeps the election's timing safe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.shell.lease import LeaderSettings

S = timedelta(seconds=1)


def test_defaults_are_client_go_s() -> None:
    settings = LeaderSettings(namespace="ptc", identity="pod-a")
    assert settings.name == "ptc-leader"
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (
        15 * S,
        10 * S,
        2 * S,
    )
    assert settings.lease_duration_seconds == 15


def test_fast_timings_for_tests_are_accepted() -> None:
    settings = LeaderSettings(
        namespace="ptc",
        identity="pod-a",
        lease_duration=S,
        renew_deadline=0.6 * S,
        retry_period=0.1 * S,
    )
    assert settings.lease_duration_seconds == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # the order: the leader retries within its deadline, and stops before others may take it
        ({"renew_deadline": 15 * S}, "retry_period < renew_deadline < lease_duration"),
        ({"renew_deadline": 20 * S}, "retry_period < renew_deadline < lease_duration"),
        ({"retry_period": 10 * S}, "retry_period < renew_deadline < lease_duration"),
        ({"retry_period": 12 * S}, "retry_period < renew_deadline < lease_duration"),
        # the Lease stores whole seconds: a fractional duration would be silently changed
        ({"lease_duration": 15.5 * S}, "lease_duration must be whole seconds"),
        ({"lease_duration": timedelta(0)}, "lease_duration must be positive"),
        ({"renew_deadline": -S}, "renew_deadline must be positive"),
        ({"retry_period": timedelta(0)}, "retry_period must be positive"),
        ({"identity": ""}, "identity must not be empty"),
        ({"identity": "  "}, "identity must not be empty"),
        ({"namespace": ""}, "namespace must not be empty"),
        ({"name": ""}, "name must not be empty"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(
    changes: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {"namespace": "ptc", "identity": "pod-a", **changes}
    with pytest.raises(ValueError, match=message):
        LeaderSettings(**fields)


def test_settings_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        LeaderSettings("ptc", "ptc-leader", "pod-a")  # type: ignore[misc]
    settings = LeaderSettings(namespace="ptc", identity="pod-a")
    with pytest.raises(AttributeError):
        settings.identity = "pod-b"  # type: ignore[misc]
