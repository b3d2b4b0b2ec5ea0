"""Request metrics in the Prometheus text exposition format (version 0.0.4): per-transaction
counters by outcome and latency histograms, plus gauges registered by other parts of the node
(e.g. the outbox queue depth).  Thread-safe; rendered by ``GET /metrics``."""
from __future__ import annotations

import bisect
import threading
from typing import Callable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[tuple[str, int], int] = {}
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, transaction: str, seconds: float, outcome: int = 0) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            key = (transaction, outcome)
            self._count[key] = self._count.get(key, 0) + 1
            h = self._hist.setdefault(transaction, [0] * (len(BUCKETS) + 1))
            h[i] += 1
            self._sum[transaction] = self._sum.get(transaction, 0.0) + seconds

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def render(self) -> str:
        out = ["# HELP hie_requests_total Transactions handled, by outcome (ATNA outcome code).",
               "# TYPE hie_requests_total counter"]
        with self._lock:
            count = dict(self._count)
            hist = {k: list(v) for k, v in self._hist.items()}
            sums = dict(self._sum)
        for (tx, outcome), n in sorted(count.items()):
            out.append(f'hie_requests_total{{transaction="{tx}",outcome="{outcome}"}} {n}')
        out += ["# HELP hie_request_duration_seconds Transaction latency.",
                "# TYPE hie_request_duration_seconds histogram"]
        for tx, h in sorted(hist.items()):
            acc = 0
            for bound, n in zip(BUCKETS, h):
                acc += n
                out.append(f'hie_request_duration_seconds_bucket{{transaction="{tx}",le="{bound}"}} {acc}')
            acc += h[-1]
            out.append(f'hie_request_duration_seconds_bucket{{transaction="{tx}",le="+Inf"}} {acc}')
            out.append(f'hie_request_duration_seconds_sum{{transaction="{tx}"}} {sums[tx]:.6f}')
            out.append(f'hie_request_duration_seconds_count{{transaction="{tx}"}} {acc}')
        for name, (help_text, read) in sorted(self._gauges.items()):
            try:
                value = float(read())
            except Exception:
                continue
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(out) + "\n"
