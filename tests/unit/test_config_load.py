"""Loading config files: examples, defaults inheritance, every problem at once with its line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from controller.core.config import ConfigError, LoadedConfig, load_config, load_config_text
from controller.core.config.model import Config, Rollout
from controller.core.config.schema import allowed_keys, config_schema, schema_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "config").glob("*.yaml"))

ROLLOUT = """\
  - name: web
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
"""


def write(tmp_path: Path, text: str, name: str = "ptc.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(text: str) -> list[str]:
    """Every problem reported for `text` (which must be invalid), as printed, file 'f.yaml'."""
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "f.yaml")
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def load(text: str) -> LoadedConfig:
    return load_config_text(textwrap.dedent(text), "f.yaml")


# ---------------------------------------------------------------------------------------------
# The examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_load_without_problems(path: Path) -> None:
    loaded = load_config(path)
    assert loaded.warnings == []
    assert loaded.source == str(path)
    assert loaded.config.rollouts


def test_examples_are_there() -> None:
    assert [p.name for p in EXAMPLES] == ["minimal.yaml", "zai-proxy.yaml"]


def test_zai_proxy_example_values() -> None:
    r = load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")
    assert (r.namespace, r.service, r.replicas, r.max_surge, r.max_unavailable) == (
        "devpod",
        "zai-proxy",
        4,
        1,
        0,
    )
    assert (r.stable.deployment, r.stable.version) == ("zai-proxy", None)
    assert (r.canary.deployment, r.canary.version) == ("zai-proxy-v2", "v2")
    assert [(s.weight, s.hold) for s in r.steps] == [
        (25, timedelta(minutes=2)),
        (50, timedelta(minutes=5)),
        (75, timedelta(minutes=5)),
    ]
    assert r.flip.bake == timedelta(minutes=10)
    assert r.retention.scale_down_delay == timedelta(hours=24)
    assert [m.name for m in r.analysis.metrics] == [
        "server-error-ratio",
        "rate-limited-ratio",
        "upstream-429-pressure",
        "p95-latency",
    ]
    assert r.analysis.metrics[1].for_ == timedelta(minutes=2)
    assert r.analysis.metrics[1].max == 0.10
    pressure = r.analysis.metrics[2].counter_ratio
    assert pressure is not None and pressure.per_event


def test_minimal_example_gets_the_documented_defaults() -> None:
    r = load_config(REPO / "config" / "minimal.yaml").config.rollouts[0]
    assert (r.namespace, r.version_label, r.max_surge, r.max_unavailable) == (
        "default",
        "version",
        "25%",
        0,
    )
    assert r.analysis.metrics == []
    assert r.flip.bake == timedelta(minutes=5)


def test_examples_satisfy_the_committed_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    schema = json.loads((REPO / "config" / "schema.json").read_text())
    for path in EXAMPLES:
        data = json.loads(json.dumps(YAML(typ="safe").load(path.read_text())))
        jsonschema.validate(data, schema)


# ---------------------------------------------------------------------------------------------
# defaults: inheritance


DEFAULTS = """\
defaults:
  namespace: shop
  maxSurge: 1
  steps:
    - {weight: 10, hold: 1m}
    - {weight: 50, hold: 2m}
  analysis:
    interval: 15s
    window: 1m
    metrics:
      - name: errors
        rate: {metric: errors_total}
        max: 3
rollouts:
  - name: a
    service: a
    stable: {deployment: a}
    canary: {deployment: a-v2, version: v2}
    analysis:
      window: 5m
  - name: b
    namespace: other
    service: b
    stable: {deployment: b}
    canary: {deployment: b-v2, version: v2}
    steps:
      - weight: 30
    analysis:
      metrics: []
"""


def test_defaults_are_inherited_maps_merge_lists_replace() -> None:
    a, b = load(DEFAULTS).config.rollouts
    # Scalars: inherited unless set.
    assert (a.namespace, b.namespace) == ("shop", "other")
    assert a.max_surge == b.max_surge == 1
    # Lists replace: b's single step is all it has.
    assert [s.weight for s in a.steps] == [10, 50]
    assert [(s.weight, s.hold) for s in b.steps] == [(30, timedelta(minutes=1))]
    # Maps merge key by key: a keeps the inherited interval and metrics, with its own window.
    assert (a.analysis.interval, a.analysis.window) == (timedelta(seconds=15), timedelta(minutes=5))
    assert [m.name for m in a.analysis.metrics] == ["errors"]
    assert (b.analysis.interval, b.analysis.window) == (timedelta(seconds=15), timedelta(minutes=1))
    assert b.analysis.metrics == []


def test_semantic_error_in_an_inherited_value_is_reported_once_at_defaults() -> None:
    text = """\
    defaults:
      steps:
        - weight: 50
        - weight: 10
    rollouts:
      - name: a
        service: a
        stable: {deployment: a}
        canary: {deployment: a-v2, version: v2}
      - name: b
        service: b
        stable: {deployment: b}
        canary: {deployment: b-v2, version: v2}
      - name: c
        service: c
        stable: {deployment: c}
        canary: {deployment: c-v2, version: v2}
        steps: [{weight: 5}, {weight: 4}]
    """
    assert problems(text) == [
        "f.yaml:4: rollout 'a': steps[1].weight: weights must increase strictly: 10 follows 50"
        " (inherited from defaults)",
        "f.yaml:18: rollout 'c': steps[1].weight: weights must increase strictly: 4 follows 5",
    ]


def test_type_error_in_defaults_is_reported_once_at_its_line() -> None:
    text = DEFAULTS.replace("{weight: 50, hold: 2m}", "{weight: 50, hold: 2mins}")
    assert problems(text) == [
        "f.yaml:6: defaults.steps[1].hold: expected a duration string such as 30s, 5m, 1h30m "
        "or 24h, got '2mins'",
    ]


def test_a_list_the_rollout_gives_is_not_blamed_on_defaults() -> None:
    # The rollout's metrics replace the inherited ones, so a key missing in them is the
    # rollout's mistake, even though the inherited metric has that key.
    text = """\
    defaults:
      analysis:
        metrics:
          - name: errors
            rate: {metric: errors_total}
            max: 1
    rollouts:
      - name: web
        service: web
        stable: {deployment: web}
        canary: {deployment: web-v2, version: v2}
        steps: [{weight: 5}]
        analysis:
          metrics:
            - rate: {metric: other_total}
              max: 2
    """
    assert problems(text) == [
        "f.yaml:15: rollout 'web': analysis.metrics[0].name: required key is missing",
    ]


def test_defaults_refuses_keys_that_are_not_defaultable() -> None:
    text = "defaults:\n  service: web\nrollouts:\n" + ROLLOUT + "    steps: [{weight: 5}]\n"
    assert problems(text) == [
        "f.yaml:2: defaults.service: unknown key 'service'; expected one of: alerts, analysis, "
        "flip, maxSurge, maxUnavailable, namespace, preflight, retention, rollback, shifting, "
        "steps, versionLabel, weightTolerance",
    ]


# ---------------------------------------------------------------------------------------------
# A malformed file: every problem at once, each at its line


MALFORMED = """\
prometheus:
  url: http://prometheus:9090
  timout: 10s
rollouts:
  - name: api
    namespace: prod
    service: api
    stable: {deployment: api, version: v1}
    canary: {deployment: api, version: v2}
    maxSurge: 0
    maxUnavailable: 0
    steps:
      - weight: 50
        hold: 5 minutes
      - weight: 30
      - weight: 120
    analysis:
      metrics:
        - name: errors
          counterRatio:
            metric: http_requests_total
            numerator: {code: "=~5.."}
          max: 5
        - name: latency
          query: 'sum(rate(x{namespace="{{ namespase }}"}[{{ window }}]))'
          max: 1
  - name: Web_App
    service: web
    stabel: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    steps:
      - weight: 10
  - name: worker
    stable: {deployment: worker}
    canary: {deployment: worker-v2, version: v2}
    steps:
      - weight: 10
"""


def test_malformed_file_reports_every_problem_with_line_rollout_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, MALFORMED)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    f = str(path)
    assert [str(p) for p in info.value.problems] == [
        f"{f}:3: prometheus.timout: unknown key 'timout'; did you mean 'timeout'?",
        f"{f}:9: rollout 'api': canary.deployment: canary and stable are the same Deployment 'api'",
        f"{f}:10: rollout 'api': maxSurge: maxSurge and maxUnavailable cannot both be 0: no pod "
        "could ever move",
        f"{f}:14: rollout 'api': steps[0].hold: expected a duration string such as 30s, 5m, "
        "1h30m or 24h, got '5 minutes'",
        f"{f}:15: rollout 'api': steps[1].weight: weights must increase strictly: 30 follows 50",
        f"{f}:16: rollout 'api': steps[2].weight: expected a weight in (0, 100], got 120",
        f"{f}:23: rollout 'api': analysis.metrics[0].max: a counterRatio is a fraction in "
        "[0, 1]; max 5 can never be exceeded (did you mean 0.05?)",
        f"{f}:25: rollout 'api': analysis.metrics[1].query: unknown template variable "
        "{{ namespase }}; did you mean {{ namespace }}?",
        f"{f}:27: rollout 'Web_App': name: expected a Kubernetes object name: a DNS-1123 "
        "subdomain (dot-separated labels of lower-case letters, digits and '-', each starting "
        "and ending alphanumeric), got 'Web_App'",
        f"{f}:27: rollout 'Web_App': stable: required key is missing",
        f"{f}:29: rollout 'Web_App': stabel: unknown key 'stabel'; did you mean 'stable'?",
        f"{f}:33: rollout 'worker': service: required key is missing",
    ]
    assert all(p.severity == "error" for p in info.value.problems)


def test_problem_fields() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(MALFORMED, "f.yaml")
    p = info.value.problems[4]
    assert (p.file, p.line, p.rollout, p.path) == ("f.yaml", 15, "api", "steps[1].weight")


def test_snake_case_keys_are_typos_in_yaml() -> None:
    text = "rollouts:\n" + ROLLOUT + "    max_surge: 0\n    steps: [{weight: 5}]\n"
    assert problems(text) == [
        "f.yaml:6: rollout 'web': max_surge: unknown key 'max_surge'; did you mean 'maxSurge'?",
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    text = "prometheus:\n  zzz: 1\nrollouts: []\n"
    assert problems(text) == [
        "f.yaml:2: prometheus.zzz: unknown key 'zzz'; expected one of: bearerTokenFile, caFile, "
        "headers, timeout, url",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rollouts:\n  - name: a\n   service: [\n",
            "f.yaml:3: not valid YAML at column 4: did not find expected '-' indicator (while "
            "parsing a block collection)",
        ),
        (
            "rollouts:\n\t- name: a\n",
            "f.yaml:2: not valid YAML at column 1: found character that cannot start any token "
            "(while scanning for the next token); a tab: YAML indents with spaces only",
        ),
        (
            "prometheus:\n  url: http://a\n  url: http://b\nrollouts: []\n",
            "f.yaml:3: duplicate key 'url' (first at line 2)",
        ),
        ("- a\n- b\n", "f.yaml:1: expected a mapping at the top, got a list"),
        ("hello\n", "f.yaml:1: expected a mapping at the top, got str 'hello'"),
        ("rollouts:\n", "f.yaml:1: rollouts: expected a list, got nothing"),
        ("rollouts: [3]\n", "f.yaml:1: rollout '#1': expected a mapping, got int 3"),
    ],
)
def test_unusable_documents(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_yaml_merge_keys_are_located_at_their_source() -> None:
    text = """\
    rollouts:
      - &web
        name: web
        service: web
        stable: {deployment: web}
        canary: {deployment: web-v2, version: v2}
        steps: [{weight: 10}, {weight: 5}]
      - <<: *web
        name: api
        service: api
        stable: {deployment: api}
        canary: {deployment: api-v2, version: v2}
    """
    # api inherits web's steps through the merge key: the one mistake is reported once, at
    # the line that has it.
    assert problems(text) == [
        "f.yaml:7: rollout 'web': steps[1].weight: weights must increase strictly: 5 follows 10",
    ]
    fixed = load(text.replace("{weight: 5}", "{weight: 50}")).config
    assert [s.weight for s in fixed.rollout("api").steps] == [10, 50]


@pytest.mark.parametrize("text", ["", "# just a comment\n", "---\n"])
def test_empty_file_is_refused_rollouts_list_says_none(text: str) -> None:
    assert problems(text) == [
        "f.yaml:1: the file is empty: no rollouts (write `rollouts: []` to run with none)"
    ]
    assert problems("prometheus: {}\n") == [
        "f.yaml:1: rollouts: no `rollouts:` in the file (write `rollouts: []` to run with none)"
    ]
    assert load("rollouts: []\n").config == Config(rollouts=[])


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read file: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read file: Is a directory"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"rollouts: []\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2: not UTF-8 text: byte 0xe9"


# ---------------------------------------------------------------------------------------------
# Warnings


def test_warnings_do_not_fail_loading_and_come_in_line_order() -> None:
    text = """\
    rollouts:
      - name: web
        service: web
        stable: {deployment: web}
        canary: {deployment: web-v2, version: v2}
        replicas: 1
        maxSurge: 1
        steps:
          - weight: 25
          - weight: 100
    """
    loaded = load(text)
    assert [str(w) for w in loaded.warnings] == [
        "f.yaml:2: rollout 'web': flip: warning: with 1 replica(s): no stable pod stays warm "
        "through the bake",
        "f.yaml:9: rollout 'web': steps[0].weight: warning: with 1 replica(s): weight 25% is "
        "approximated by 50.0% (tolerance 10 points)",
        "f.yaml:10: rollout 'web': steps[1].weight: warning: a 100% step scales stable to 0 "
        "before the flip: nothing stays warm for an instant rollback",
    ]
    assert [s.weight for s in loaded.config.rollouts[0].steps] == [25, 100]


def test_errors_come_before_warnings() -> None:
    text = "rollouts:\n" + ROLLOUT + "    steps: [{weight: 100}]\n    replicas: 0\n"
    assert problems(text) == [
        "f.yaml:7: rollout 'web': replicas: input should be greater than or equal to 1, got 0",
        "f.yaml:6: rollout 'web': steps[0].weight: warning: a 100% step scales stable to 0 "
        "before the flip: nothing stays warm for an instant rollback",
    ]


def test_replicas_argument_plans_rollouts_without_replicas() -> None:
    text = "rollouts:\n" + ROLLOUT + "    maxSurge: 0\n    maxUnavailable: 1\n"
    text += "    steps: [{weight: 50}]\n"
    assert load(text).warnings == []
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml", replicas=1)
    assert [str(p) for p in info.value.problems] == [
        "f.yaml:2: rollout 'web': flip: with 1 replica(s): infeasible: cannot reach 1 canary / "
        "0 stable within 1 pods and a floor of 1 Ready",
        "f.yaml:8: rollout 'web': steps[0].weight: with 1 replica(s): infeasible: no split of 1 "
        "pod(s) + 0 surge has both versions; raise maxSurge",
    ]


# ---------------------------------------------------------------------------------------------
# The model's helpers


STEP_OVERRIDE = """\
rollouts:
  - name: web
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    steps:
      - weight: 10
      - weight: 50
        analysis:
          interval: 1m
          metrics: []
    analysis:
      interval: 20s
      window: 3m
      metrics:
        - name: errors
          rate: {metric: errors_total}
          max: 1
"""


def test_step_analysis_applies_a_step_override() -> None:
    r = load(STEP_OVERRIDE).config.rollouts[0]
    assert r.step_analysis(0) is r.analysis
    second = r.step_analysis(1)
    assert (second.interval, second.window, second.metrics) == (
        timedelta(minutes=1),
        timedelta(minutes=3),
        [],
    )
    assert r.analysis.interval == timedelta(seconds=20)  # the rollout's own is untouched
    assert [m.name for m in r.analysis.metrics] == ["errors"]
    assert r.step_analysis(7) is r.analysis


def _zai() -> str:
    return (REPO / "config" / "zai-proxy.yaml").read_text()


def test_spec_hash_is_stable() -> None:
    r1 = load_config_text(_zai()).config.rollouts[0]
    r2 = load_config_text(_zai()).config.rollouts[0]
    h = r1.spec_hash()
    assert len(h) == 16 and int(h, 16) >= 0
    assert r2.spec_hash() == h
    # Same content through the model's own serialisation: same hash.
    again = Rollout.model_validate(r1.model_dump(mode="json", by_alias=True))
    assert again.spec_hash() == h
    # Comments and layout are not part of the spec.
    stripped = "\n".join(line.split(" #")[0] for line in _zai().splitlines())
    assert load_config_text(stripped).config.rollouts[0].spec_hash() == h


def test_spec_hash_changes_when_a_threshold_changes() -> None:
    base = load_config_text(_zai()).config.rollouts[0].spec_hash()
    text = _zai()
    assert text.count("max: 0.10") == 1
    changed = load_config_text(text.replace("max: 0.10", "max: 0.11")).config.rollouts[0]
    assert changed.spec_hash() != base
    factor = load_config_text(text.replace("factor: 2.0", "factor: 2.5")).config.rollouts[0]
    assert factor.spec_hash() not in (base, changed.spec_hash())


def test_config_rollout_lookup_names_the_rollouts_there_are() -> None:
    config = load(DEFAULTS).config
    assert config.rollout("b").name == "b"
    with pytest.raises(KeyError) as info:
        config.rollout("zz")
    assert info.value.args[0] == "no rollout named 'zz' (rollouts in this file: a, b)"


# ---------------------------------------------------------------------------------------------
# The schema


def test_committed_schema_is_current() -> None:
    committed = (REPO / "config" / "schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), "regenerate: ptc schema > config/schema.json"


def test_schema_header() -> None:
    schema = config_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "ptc config"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("loc", "keys"),
    [
        ((), ["defaults", "prometheus", "rollouts"]),
        (
            ("rollouts", 0),
            [
                "alerts",
                "analysis",
                "canary",
                "flip",
                "maxSurge",
                "maxUnavailable",
                "name",
                "namespace",
                "preflight",
                "replicas",
                "retention",
                "rollback",
                "service",
                "sharedSelector",
                "shifting",
                "stable",
                "steps",
                "versionLabel",
                "weightTolerance",
            ],
        ),
        (("rollouts", 3, "canary"), ["deployment", "version"]),
        (("rollouts", 0, "steps", 2), ["analysis", "hold", "manualGate", "weight"]),
        (
            ("rollouts", 0, "analysis", "metrics", 0),
            [
                "compare",
                "counterRatio",
                "for",
                "gauge",
                "histogramQuantile",
                "max",
                "min",
                "minRequests",
                "name",
                "query",
                "rate",
                "sampleQuery",
            ],
        ),
        (
            ("rollouts", 0, "steps", 0, "analysis"),
            [
                "capacityGate",
                "interval",
                "maxHold",
                "metrics",
                "minRequests",
                "onError",
                "onInconclusive",
                "trafficShare",
                "window",
            ],
        ),
        (("defaults", "flip"), ["bake", "canaryReplicas"]),
        (("rollouts", 0, "name"), []),
        (("rollouts", 0, "nope"), []),
    ],
)
def test_allowed_keys(loc: tuple[str | int, ...], keys: list[str]) -> None:
    assert allowed_keys(loc) == keys


@pytest.mark.parametrize(
    "module",
    ["controller.core.analysis.templates", "controller.core.plan", "controller.core.config.model"],
)
def test_any_module_can_be_imported_first(module: str) -> None:
    """controller.core.config's checks use templates and plan, which use the config model."""
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
