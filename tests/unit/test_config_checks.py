"""Semantic checks: what a well-typed config can still get wrong, reported where it is wrong."""

from __future__ import annotations

import textwrap

import pytest

from controller.core.config import ConfigError, load_config_text
from controller.core.config.checks import Severity, check_rollout
from controller.core.config.model import Rollout


def rollout_yaml(extra: str = "", steps: str = "    steps: [{weight: 10}, {weight: 50}]\n") -> str:
    """One rollout called web; `extra` is indented by 4 and lands from line 6 on."""
    return (
        "rollouts:\n"
        "  - name: web\n"
        "    service: web\n"
        "    stable: {deployment: web, version: v1}\n"
        "    canary: {deployment: web-v2, version: v2}\n"
        + textwrap.indent(textwrap.dedent(extra), "    ")
        + steps
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml")
    return [str(p) for p in info.value.problems]


def warnings(text: str) -> list[str]:
    return [str(w) for w in load_config_text(text, "f.yaml").warnings]


def test_a_good_rollout_has_no_findings() -> None:
    assert warnings(rollout_yaml()) == []


def test_same_deployment_for_stable_and_canary() -> None:
    text = rollout_yaml().replace("deployment: web-v2", "deployment: web")
    assert problems(text) == [
        "f.yaml:5: rollout 'web': canary.deployment: canary and stable are the same Deployment "
        "'web'",
    ]


def test_same_version_for_stable_and_canary() -> None:
    text = rollout_yaml().replace("version: v1", "version: v2")
    assert problems(text) == [
        "f.yaml:5: rollout 'web': canary.version: canary version 'v2' equals stable's; the flip "
        "would pin the Service to both",
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "[{weight: 50}, {weight: 50}]",
            ["steps[1].weight: weights must increase strictly: 50 follows 50"],
        ),
        ("[{weight: 0}]", ["steps[0].weight: expected a weight in (0, 100], got 0"]),
        ("[{weight: -5}]", ["steps[0].weight: expected a weight in (0, 100], got -5"]),
        ("[{weight: 100.5}]", ["steps[0].weight: expected a weight in (0, 100], got 100.5"]),
        (
            "[{weight: 100}, {weight: 100}]",
            [
                "steps[0].weight: only the last step may have weight 100",
                "steps[1].weight: weights must increase strictly: 100 follows 100",
                # the warning about the last 100% step comes after the errors
                "steps[1].weight: warning: a 100% step scales stable to 0 before the flip: "
                "nothing stays warm for an instant rollback",
            ],
        ),
        # Flow style puts several steps on one line: each is still reported.
        (
            "[{weight: 5}, {weight: 5}, {weight: 5}]",
            [
                "steps[1].weight: weights must increase strictly: 5 follows 5",
                "steps[2].weight: weights must increase strictly: 5 follows 5",
            ],
        ),
    ],
)
def test_weights(steps: str, expected: list[str]) -> None:
    text = rollout_yaml(steps=f"    steps: {steps}\n")
    assert problems(text) == [f"f.yaml:6: rollout 'web': {e}" for e in expected]


def test_steps_must_not_be_empty() -> None:
    assert problems(rollout_yaml(steps="    steps: []\n")) == [
        "f.yaml:6: rollout 'web': steps: expected at least 1 item(s), got none",
    ]


@pytest.mark.parametrize(
    ("surge", "unavailable"), [("0", "0"), ('"0%"', "0"), ("0", '"0%"'), ('"0%"', '"0%"')]
)
def test_surge_and_unavailable_both_zero(surge: str, unavailable: str) -> None:
    text = rollout_yaml(f"maxSurge: {surge}\nmaxUnavailable: {unavailable}\n")
    assert problems(text) == [
        "f.yaml:6: rollout 'web': maxSurge: maxSurge and maxUnavailable cannot both be 0: no pod "
        "could ever move",
    ]


@pytest.mark.parametrize("value", ['"00%"', '"101%"', '"5"', "-1", "true", '"x%"'])
def test_surge_values_the_schema_refuses_are_refused(value: str) -> None:
    (problem,) = problems(rollout_yaml(f"maxSurge: {value}\n"))
    assert problem.startswith("f.yaml:6: rollout 'web': maxSurge: expected a non-negative integer")


def test_surge_alone_zero_is_fine() -> None:
    assert warnings(rollout_yaml("maxSurge: 0\nmaxUnavailable: 1\n")) == []


def test_shared_selector_checks() -> None:
    assert problems(rollout_yaml("sharedSelector: {}\n")) == [
        "f.yaml:6: rollout 'web': sharedSelector: must not be empty: it would match every pod",
    ]
    assert problems(rollout_yaml("sharedSelector:\n  app: web\n  version: v1\n")) == [
        "f.yaml:8: rollout 'web': sharedSelector.version: the shared selector must not contain "
        "the version label 'version': it must match both versions",
    ]


def test_duplicate_rollout_names_and_services() -> None:
    one = rollout_yaml()
    two = one.removeprefix("rollouts:\n")
    assert problems(one + two) == [
        "f.yaml:7: rollout 'web': name: duplicate rollout name 'web' (also rollouts[0])",
        "f.yaml:8: rollout 'web': service: Service default/web is already managed by rollout "
        "'web'; one rollout per Service",
    ]


def metric_yaml(body: str, provider: str = "prometheus") -> str:
    """Analysis with one metric; the metric's first key is on line 9."""
    return rollout_yaml(
        f"analysis:\n  provider: {provider}\n  metrics:\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """\
            - name: errors
              counterRatio: {metric: req_total, numerator: {code: "500"}}
              max: 5
            """,
            [
                "11: ...metrics[0].max: a counterRatio is a fraction in [0, 1]; max 5 can never be "
                "exceeded (did you mean 0.05?)"
            ],
        ),
        (
            """\
            - name: success
              counterRatio: {metric: req_total, numerator: {code: "200"}}
              min: 99
            """,
            [
                "11: ...metrics[0].min: a counterRatio is a fraction in [0, 1]; min 99 can never "
                "be met (did you mean 0.99?)"
            ],
        ),
        (
            """\
            - name: errors
              rate: {metric: err_total}
            """,
            ["9: ...metrics[0]: a metric needs a threshold: max, min or compare"],
        ),
        (
            """\
            - name: errors
              rate: {metric: err_total}
              min: 2
              max: 1
            """,
            ["11: ...metrics[0].min: min 2 must be below max 1"],
        ),
        (
            """\
            - name: errors
              rate: {metric: err_total}
              max: -1
            """,
            ["11: ...metrics[0].max: max -1 is negative; rates and ratios are not"],
        ),
        (
            """\
            - name: errors
              max: 1
            """,
            [
                "9: ...metrics[0]: expected exactly one of query, counterRatio, gauge, "
                "histogramQuantile, rate; got none"
            ],
        ),
        (
            """\
            - name: errors
              rate: {metric: err_total}
              gauge: {metric: g}
              max: 1
            """,
            [
                "9: ...metrics[0]: expected exactly one of query, counterRatio, gauge, "
                "histogramQuantile, rate; got gauge, rate"
            ],
        ),
        (
            """\
            - name: errors
              query: 'sum(x{ {{ selecter }} })'
              sampleQuery: 'sum(y{pod=~"{{ pod_regexp }}"})'
              max: 1
            """,
            [
                "10: ...metrics[0].query: unknown template variable {{ selecter }}; did you mean "
                "{{ selector }}?",
                "11: ...metrics[0].sampleQuery: unknown template variable {{ pod_regexp }}; did "
                "you mean {{ pod_regex }}?",
            ],
        ),
        (
            """\
            - name: errors
              query: 'sum(x{a="{{ zzzz }}"})'
              max: 1
            """,
            [
                "10: ...metrics[0].query: unknown template variable {{ zzzz }}; known variables: "
                "canary_deployment, canary_pod_regex, canary_version, deployment, namespace, "
                "pod_regex, selector, service, service_pod_regex, stable_deployment, "
                "stable_pod_regex, stable_version, version, window",
            ],
        ),
        (
            """\
            - name: errors
              rate: {metric: a}
              max: 1
            - name: errors
              rate: {metric: b}
              max: 1
            """,
            ["12: ...metrics[1].name: duplicate metric name 'errors'"],
        ),
    ],
)
def test_metric_checks(body: str, expected: list[str]) -> None:
    prefix = "f.yaml:{}: rollout 'web': analysis.metrics"
    got = problems(metric_yaml(body))
    want = []
    for e in expected:
        line, rest = e.split(": ...metrics", 1)
        want.append(prefix.format(line) + rest)
    assert got == want


def test_a_counter_ratio_over_two_counters_is_no_fraction_and_no_subset() -> None:
    # Upstream 429 attempts per client request: up to 4 with 3 retries, over another counter.
    body = """\
    - name: pressure
      counterRatio:
        metric: zai_proxy_upstream_errors_total
        numerator: {error_type: "429"}
        denominator: {status_code: "!=503"}
        denominatorMetric: zai_proxy_requests_total
      max: 1.5
    """
    load_config_text(metric_yaml(body), "f.yaml")  # no ConfigError
    same_counter = body.replace(
        "denominatorMetric: zai_proxy_requests_total",
        "denominatorMetric: zai_proxy_upstream_errors_total",
    )
    found = problems(metric_yaml(same_counter))
    assert any("a counterRatio is a fraction in [0, 1]; max 1.5" in f for f in found)
    assert any("the denominator's matcher status_code" in f for f in found)


def test_direct_provider_refuses_raw_queries() -> None:
    body = "- name: errors\n  query: 'sum(x)'\n  max: 1\n"
    assert problems(metric_yaml(body, provider="direct")) == [
        "f.yaml:10: rollout 'web': analysis.metrics[0].query: the direct provider evaluates "
        "structured metrics only; use counterRatio, gauge, histogramQuantile or rate",
    ]


def test_analysis_timing_and_selectors() -> None:
    text = rollout_yaml(
        """\
        analysis:
          interval: 5m
          maxHold: 1m
          window: "0"
          selectors:
            canary: 'pod=~"{{ canary_regex }}"'
        """
    )
    assert problems(text) == [
        "f.yaml:8: rollout 'web': analysis.maxHold: maxHold is shorter than one analysis "
        "interval: a step could never be judged",
        "f.yaml:9: rollout 'web': analysis.window: window must be longer than 0s",
        "f.yaml:11: rollout 'web': analysis.selectors.canary: unknown template variable "
        "{{ canary_regex }}; did you mean {{ canary_pod_regex }}?",
    ]


def test_capacity_gate_checks() -> None:
    text = rollout_yaml(
        """\
        analysis:
          capacityGate:
            capacity: {gauge: {metric: cap}}
            demand: {query: 'sum(rate(x[{{ windw }}]))'}
            headroom: 0.5
        """
    )
    assert problems(text) == [
        "f.yaml:9: rollout 'web': analysis.capacityGate.demand.query: unknown template variable "
        "{{ windw }}; did you mean {{ window }}?",
        "f.yaml:10: rollout 'web': analysis.capacityGate.headroom: warning: headroom 0.5 < 1 "
        "lets canary take more than it can absorb",
    ]
    assert warnings(text.replace("{{ windw }}", "{{ window }}")) == [
        "f.yaml:10: rollout 'web': analysis.capacityGate.headroom: warning: headroom 0.5 < 1 "
        "lets canary take more than it can absorb",
    ]


def test_step_override_is_judged_once_where_it_is_written() -> None:
    # The rollout's metric is wrong once: it is not reported again for the step that only
    # changes the interval. The step's own maxHold is judged against the merged interval.
    text = rollout_yaml(
        """\
        analysis:
          metrics:
            - name: x
              counterRatio: {metric: m, numerator: {a: b}}
              max: 5
        """,
        steps=textwrap.indent(
            textwrap.dedent(
                """\
                steps:
                  - weight: 10
                    analysis:
                      interval: 1m
                  - weight: 20
                    analysis:
                      maxHold: 1s
                      metrics:
                        - name: y
                          rate: {metric: m}
                """
            ),
            "    ",
        ),
    )
    assert problems(text) == [
        "f.yaml:10: rollout 'web': analysis.metrics[0].max: a counterRatio is a fraction in "
        "[0, 1]; max 5 can never be exceeded (did you mean 0.05?)",
        "f.yaml:17: rollout 'web': steps[1].analysis.maxHold: maxHold is shorter than one "
        "analysis interval: a step could never be judged",
        "f.yaml:19: rollout 'web': steps[1].analysis.metrics[0]: a metric needs a threshold: "
        "max, min or compare",
    ]


def test_plan_warnings_and_errors_with_replicas() -> None:
    # N=3 at 50% with maxSurge 0 / maxUnavailable 1: 2/1 is 66.7%, outside the tolerance.
    text = rollout_yaml(
        "replicas: 3\nmaxSurge: 0\nmaxUnavailable: 1\n", "    steps: [{weight: 50}]\n"
    )
    assert warnings(text) == [
        "f.yaml:2: rollout 'web': flip: warning: with 3 replica(s): no stable pod stays warm "
        "through the bake",
        "f.yaml:9: rollout 'web': steps[0].weight: warning: with 3 replica(s): weight 50% is "
        "approximated by 66.7% (tolerance 10 points)",
    ]
    # A wider tolerance accepts the approximation.
    assert warnings(text.replace("replicas: 3", "replicas: 3\n    weightTolerance: 20")) == [
        "f.yaml:2: rollout 'web': flip: warning: with 3 replica(s): no stable pod stays warm "
        "through the bake",
    ]


def test_plan_is_not_checked_while_there_are_errors() -> None:
    text = rollout_yaml("replicas: 1\nmaxSurge: 0\nmaxUnavailable: 0\n")
    assert problems(text) == [
        "f.yaml:7: rollout 'web': maxSurge: maxSurge and maxUnavailable cannot both be 0: no pod "
        "could ever move",
    ]


def test_check_rollout_locations_are_relative_to_the_rollout() -> None:
    def make(*weights: int) -> Rollout:
        return Rollout.model_validate(
            {
                "name": "web",
                "service": "web",
                "stable": {"deployment": "web"},
                "canary": {"deployment": "web-v2", "version": "v2"},
                "steps": [{"weight": w} for w in weights],
            }
        )

    (finding,) = check_rollout(make(60, 40))
    assert (finding.loc, finding.severity) == (("steps", 1, "weight"), Severity.ERROR)
    # No replicas in the rollout: the plan is checked only for the N given.
    assert check_rollout(make(25)) == []
    (planned,) = check_rollout(make(25), replicas=1)
    assert (planned.loc, planned.severity) == (("steps", 0, "weight"), Severity.WARNING)
    assert planned.message == (
        "with 1 replica(s): weight 25% is approximated by 50.0% (tolerance 10 points)"
    )


def test_preflight_metrics_at_start_and_lazy() -> None:
    good = """\
        preflight:
          metrics:
            atStart: [zai_proxy_build_info]
            lazy: [zai_proxy_requests_total, zai_proxy_request_duration_seconds]
        """
    config = load_config_text(rollout_yaml(good), "f.yaml")
    assert config.warnings == []
    preflight = config.config.rollouts[0].preflight
    assert preflight.at_start() == ["zai_proxy_build_info"]
    assert preflight.start_grace.total_seconds() == 30 and preflight.timeout.total_seconds() == 300
    both = good.replace(
        "[zai_proxy_build_info]", "[zai_proxy_build_info, zai_proxy_requests_total]"
    )
    assert problems(rollout_yaml(both)) == [
        "f.yaml:8: rollout 'web': preflight.metrics.atStart[1]: 'zai_proxy_requests_total' is "
        "also in metrics.lazy: a family is either there from process start or created lazily, "
        "not both",
    ]
    assert problems(rollout_yaml("preflight: {metrics: {lazy: ['up{job=\"x\"}']}}\n")) == [
        "f.yaml:6: rollout 'web': preflight.metrics.lazy[0]: expected a Prometheus metric name "
        "(letters, digits, '_' and ':', not starting with a digit), got 'up{job=\"x\"}'",
    ]


def test_old_expect_metrics_still_loads_as_at_start_with_a_pointer_to_lazy() -> None:
    text = rollout_yaml(
        "preflight: {expectMetrics: [zai_proxy_requests_total], "
        "metrics: {atStart: [zai_proxy_build_info]}}\n"
    )
    loaded = load_config_text(text, "f.yaml")
    assert loaded.config.rollouts[0].preflight.at_start() == [
        "zai_proxy_build_info",
        "zai_proxy_requests_total",
    ]
    [warning] = [str(w) for w in loaded.warnings]
    assert warning.startswith(
        "f.yaml:6: rollout 'web': preflight.expectMetrics: warning: expectMetrics is the old "
        "name of metrics.atStart"
    )
    assert "belongs in metrics.lazy" in warning
