"""The sandbox's exposition writer against text as client_golang (the real zai-proxy) writes it."""

from __future__ import annotations

import math

import pytest

from controller.sandbox.exposition import Counter, Gauge, Histogram, format_value, render


@pytest.mark.parametrize(
    ("value", "go"),
    [
        # Go: strconv.FormatFloat(v, 'g', -1, 64), zero special-cased by expfmt's writeFloat.
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.0, "-1"),
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (1.5e-05, "1.5e-05"),
        (12.345678, "12.345678"),
        (0.30000000000000004, "0.30000000000000004"),
        (120.0, "120"),
        (999999.0, "999999"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1234567.5, "1.2345675e+06"),
        (1e9, "1e+09"),
        (1e21, "1e+21"),
        (-2.5e-7, "-2.5e-07"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
    ],
)
def test_values_as_go_writes_them(value: float, go: str) -> None:
    assert format_value(value) == go


def test_families_as_the_real_binary_exposes_them() -> None:
    requests = Counter(
        "zai_proxy_requests_total", "Total requests", ["method", "path", "status_code", "variant"]
    )
    requests.inc(("POST", "/v1/chat/completions", "200", "production"), 1234567)
    requests.inc(("POST", "/v1/chat/completions", "502", "production"), 3)
    size = Histogram("zai_proxy_request_size_bytes", "Request size", ["variant"], [100, 1e9])
    size.observe(("production",), 150)
    limit = Gauge("zai_proxy_rate_limit_requests_per_second", "Current limit", ["variant"])
    limit.set(("production",), 9.5)
    assert render([requests, size, limit]) == (
        "# HELP zai_proxy_rate_limit_requests_per_second Current limit\n"
        "# TYPE zai_proxy_rate_limit_requests_per_second gauge\n"
        'zai_proxy_rate_limit_requests_per_second{variant="production"} 9.5\n'
        "# HELP zai_proxy_request_size_bytes Request size\n"
        "# TYPE zai_proxy_request_size_bytes histogram\n"
        'zai_proxy_request_size_bytes_bucket{variant="production",le="100"} 0\n'
        'zai_proxy_request_size_bytes_bucket{variant="production",le="1e+09"} 1\n'
        'zai_proxy_request_size_bytes_bucket{variant="production",le="+Inf"} 1\n'
        'zai_proxy_request_size_bytes_sum{variant="production"} 150\n'
        'zai_proxy_request_size_bytes_count{variant="production"} 1\n'
        "# HELP zai_proxy_requests_total Total requests\n"
        "# TYPE zai_proxy_requests_total counter\n"
        'zai_proxy_requests_total{method="POST",path="/v1/chat/completions",status_code="200",'
        'variant="production"} 1.234567e+06\n'
        'zai_proxy_requests_total{method="POST",path="/v1/chat/completions",status_code="502",'
        'variant="production"} 3\n'
    )
