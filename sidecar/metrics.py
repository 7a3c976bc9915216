"""``/metrics``: Prometheus text through prometheus-client, every name ``waha_sync_*``.

Everything is read at scrape time: counters, pending and skipped files from
each syncer's status as it is now, database, readiness and totals from the
health check's latest ``View`` (at most ~2 s old). Nothing is updated on the
sync path except the change-to-durable histogram, one observation per commit. Every
series carries a ``tree`` label (``sessions`` or ``media``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from waha_sync.sidecar.status import ERROR_KINDS, StatusSnapshot
from waha_sync.sidecar.view import View

LAG_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
Live = Callable[[], dict[str, StatusSnapshot]]  # each tree's status now, by label


class _ViewCollector(Collector):
    def __init__(self, view: Callable[[], View], live: Live) -> None:
        self._view = view
        self._live = live

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        live = self._live()  # counters as of now, not as of the last health check

        def family(kind: type[Metric], name: str, doc: str, *labels: str) -> Metric:
            return kind(f"waha_sync_{name}", doc, labels=["tree", *labels])  # type: ignore[call-arg]

        counters = {
            "commits": family(CounterMetricFamily, "commits", "Commits made by this sidecar."),
            "files_shipped": family(
                CounterMetricFamily, "files_shipped", "Changed files committed."
            ),
            "bytes_shipped": family(
                CounterMetricFamily, "bytes_shipped", "Raw bytes of the committed files."
            ),
            "files_deleted": family(
                CounterMetricFamily, "files_deleted", "Deletions (tombstones) committed."
            ),
        }
        errors = family(
            CounterMetricFamily,
            "errors",
            f"Failed sync attempts by kind ({', '.join(ERROR_KINDS)}).",
            "kind",
        )
        gauges = {
            "pending": family(GaugeMetricFamily, "pending_paths", "Changed paths not shipped."),
            "last_commit_at": family(
                GaugeMetricFamily,
                "last_commit_timestamp_seconds",
                "Unix time of the last successful commit.",
            ),
            "db_up": family(
                GaugeMetricFamily, "database_up", "1 if the last database check succeeded."
            ),
            "fenced": family(
                GaugeMetricFamily, "fenced", "1 once another holder claimed the instance."
            ),
            "ready": family(GaugeMetricFamily, "ready", "1 if /health answers 200 for the tree."),
            "sessions": family(GaugeMetricFamily, "sessions", "WAHA session folders stored."),
            "stored_files": family(GaugeMetricFamily, "stored_files", "Live files stored."),
            "stored_bytes": family(GaugeMetricFamily, "stored_bytes", "Raw bytes of them."),
            "restore_seconds": family(
                GaugeMetricFamily, "restore_duration_seconds", "How long this pod's restore took."
            ),
            "restore_files": family(GaugeMetricFamily, "restore_files", "Files it restored."),
        }
        skipped = family(GaugeMetricFamily, "skipped_files", "Files left out, by reason.", "reason")
        usage = {
            "stored": family(
                GaugeMetricFamily,
                "session_stored_bytes",
                "Compressed bytes a session's live files take in the database.",
                "session",
            ),
            "history": family(
                GaugeMetricFamily,
                "session_history_bytes",
                "Compressed bytes a session's retained history adds in the database.",
                "session",
            ),
        }
        for t in view.trees:
            s, label = live.get(t.label, t.status), [t.label]
            counts = {
                "commits": s.commits,
                "files_shipped": s.files_shipped,
                "bytes_shipped": s.bytes_shipped,
                "files_deleted": s.files_deleted,
            }
            for key, metric in counters.items():
                metric.add_metric(label, counts[key])  # type: ignore[attr-defined]
            for kind in sorted({*ERROR_KINDS, *s.errors}):
                count = s.errors.get(kind, 0)
                errors.add_metric([t.label, kind], count)  # type: ignore[attr-defined]
            by_reason: dict[str, int] = {}
            for left_out in s.skipped.values():
                reason = left_out.kind.label
                by_reason[reason] = by_reason.get(reason, 0) + 1
            for reason, count in sorted(by_reason.items()):
                skipped.add_metric([t.label, reason], count)  # type: ignore[attr-defined]
            values: dict[str, float | None] = {
                "pending": s.pending,
                "last_commit_at": s.last_commit_at,
                "db_up": float(t.db.up),
                "fenced": float(t.fenced),
                "ready": float(t.problem is None),
                "sessions": len(t.sessions),
                "stored_files": t.stored_files,
                "stored_bytes": t.stored_bytes,
            }
            if t.marker is not None and t.marker.source == "restore":
                values["restore_seconds"] = t.marker.seconds
                values["restore_files"] = t.marker.files
            for key, value in values.items():
                if value is not None:
                    gauges[key].add_metric(label, value)  # type: ignore[attr-defined]
            for x in (*t.sessions, *([t.other] if t.other is not None else [])):
                if x.stored_bytes is not None and x.history_bytes is not None:
                    who = [t.label, x.name or "(outside sessions)"]
                    usage["stored"].add_metric(who, x.stored_bytes)  # type: ignore[attr-defined]
                    usage["history"].add_metric(who, x.history_bytes)  # type: ignore[attr-defined]
        yield from counters.values()
        yield errors
        yield from gauges.values()
        yield skipped
        yield from usage.values()


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
