"""``/metrics``: Prometheus text through prometheus-client, every name ``waha_sync_*``.

Everything is read at scrape time: counters, pending and skipped files from
each syncer's status as it is now, database, readiness and totals from the
health check's latest ``View`` (at most ~2 s old). Nothing is updated on the
sync path except the change-to-durable histogram, one observation per commit. Every
series carries a ``tree`` label (``sessions`` or ``media``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from waha_sync.common.sync.marker import Marker
from waha_sync.sidecar.status import ERROR_KINDS, StatusSnapshot
from waha_sync.sidecar.view import TreeView, View

LAG_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
Live = Callable[[], dict[str, StatusSnapshot]]  # each tree's status now, by label


# Per-tree series: (name without the waha_sync_ prefix, help, value from the syncer's live
# status and the health check's view of the tree; None leaves the tree out of the series).
Series = tuple[str, str, Callable[[StatusSnapshot, TreeView], float | None]]
COUNTERS: tuple[Series, ...] = (
    ("commits", "Commits made by this sidecar.", lambda s, t: s.commits),
    ("files_shipped", "Changed files committed.", lambda s, t: s.files_shipped),
    ("bytes_shipped", "Raw bytes of the committed files.", lambda s, t: s.bytes_shipped),
    ("files_deleted", "Deletions (tombstones) committed.", lambda s, t: s.files_deleted),
)
GAUGES: tuple[Series, ...] = (
    ("pending_paths", "Changed paths not shipped.", lambda s, t: s.pending),
    (
        "last_commit_timestamp_seconds",
        "Unix time of the last successful commit.",
        lambda s, t: s.last_commit_at,
    ),
    ("database_up", "1 if the last database check succeeded.", lambda s, t: float(t.db.up)),
    ("fenced", "1 once another holder claimed the instance.", lambda s, t: float(t.fenced)),
    ("ready", "1 if /health answers 200 for the tree.", lambda s, t: float(t.problem is None)),
    ("sessions", "WAHA session folders stored.", lambda s, t: len(t.sessions)),
    ("stored_files", "Live files stored.", lambda s, t: t.stored_files),
    ("stored_bytes", "Raw bytes of them.", lambda s, t: t.stored_bytes),
    (
        "restore_duration_seconds",
        "How long this pod's restore took.",
        lambda s, t: m.seconds if (m := _restored(t)) is not None else None,
    ),
    (
        "restore_files",
        "Files it restored.",
        lambda s, t: m.files if (m := _restored(t)) is not None else None,
    ),
)


def _restored(t: TreeView) -> Marker | None:
    """The tree's marker when this pod's restore wrote it (not a sidecar's --force)."""
    return t.marker if t.marker is not None and t.marker.source == "restore" else None


def _family(kind: type[Metric], name: str, doc: str, *labels: str) -> Metric:
    return kind(f"waha_sync_{name}", doc, labels=["tree", *labels])  # type: ignore[call-arg]


class _ViewCollector(Collector):
    def __init__(self, view: Callable[[], View], live: Live) -> None:
        self._view = view
        self._live = live

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        live = self._live()  # counters as of now, not as of the last health check
        counters = [(_family(CounterMetricFamily, n, doc), get) for n, doc, get in COUNTERS]
        kinds = ", ".join(ERROR_KINDS)
        errors = _family(
            CounterMetricFamily, "errors", f"Failed sync attempts by kind ({kinds}).", "kind"
        )
        gauges = [(_family(GaugeMetricFamily, n, doc), get) for n, doc, get in GAUGES]
        skipped = _family(
            GaugeMetricFamily, "skipped_files", "Files left out, by reason.", "reason"
        )
        stored = _family(
            GaugeMetricFamily,
            "session_stored_bytes",
            "Compressed bytes a session's live files take in the database.",
            "session",
        )
        history = _family(
            GaugeMetricFamily,
            "session_history_bytes",
            "Compressed bytes a session's retained history adds in the database.",
            "session",
        )
        for t in view.trees:
            s = live.get(t.label, t.status)
            for metric, get in (*counters, *gauges):
                value = get(s, t)
                if value is not None:
                    metric.add_metric([t.label], value)  # type: ignore[attr-defined]
            for kind in sorted({*ERROR_KINDS, *s.errors}):
                errors.add_metric([t.label, kind], s.errors.get(kind, 0))  # type: ignore[attr-defined]
            reasons = Counter(left_out.kind.label for left_out in s.skipped.values())
            for reason, count in sorted(reasons.items()):
                skipped.add_metric([t.label, reason], count)  # type: ignore[attr-defined]
            for x in (*t.sessions, *([t.other] if t.other is not None else [])):
                if x.stored_bytes is not None and x.history_bytes is not None:
                    who = [t.label, x.name or "(outside sessions)"]
                    stored.add_metric(who, x.stored_bytes)  # type: ignore[attr-defined]
                    history.add_metric(who, x.history_bytes)  # type: ignore[attr-defined]
        yield from (metric for metric, _ in counters)
        yield errors
        yield from (metric for metric, _ in gauges)
        yield skipped
        yield stored
        yield history


class Metrics:
    """The sidecar's own registry: view-derived series, the latency histogram, process stats."""

    def __init__(self, view: Callable[[], View], live: Live) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ViewCollector(view, live))
        ProcessCollector(namespace="waha_sync", registry=self.registry)
        self.lag = Histogram(
            "waha_sync_change_to_durable_seconds",
            "Seconds from a file's first change to the commit that made it durable.",
            ["tree"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def observer(self, tree: str) -> Callable[[float], None]:
        return self.lag.labels(tree).observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
