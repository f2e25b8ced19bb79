"""golemd.http.metrics' own counters and histograms, read back through
prometheus_client's parser: a value on a bucket's bound counts in that
bucket (`le`), buckets are cumulative, +Inf holds every observation."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from golemd.http.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    m = Metrics()
    for seconds in (0.00005, 0.0001, 0.0001, 0.002, 400.0):
        m.commit_timer(int(seconds * 1e9))
    s = samples(m)
    assert s[("golemd_store_commit_seconds_bucket", (("le", "5e-05"),))] == 1
    assert s[("golemd_store_commit_seconds_bucket", (("le", "0.0001"),))] == 3
    assert s[("golemd_store_commit_seconds_bucket", (("le", "0.0025"),))] == 4
    assert s[("golemd_store_commit_seconds_bucket", (("le", "1.0"),))] == 4
    assert s[("golemd_store_commit_seconds_bucket", (("le", "+Inf"),))] == 5
    assert s[("golemd_store_commit_seconds_count", ())] == 5
    assert abs(s[("golemd_store_commit_seconds_sum", ())] - 400.00225) < 1e-6


def test_counters_by_labels() -> None:
    m = Metrics()
    m.socket_connection()
    m.socket_connection()
    m.http_connection()
    m.http_requests.inc("/metrics", "200")
    s = samples(m)
    assert s[("golemd_connections_total", (("kind", "socket"),))] == 2
    assert s[("golemd_connections_total", (("kind", "http"),))] == 1
    assert s[("golemd_http_requests_total", (("code", "200"), ("route", "/metrics")))] == 1
