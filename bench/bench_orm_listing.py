"""List 10,000 policies of 1,000 tenants through the ORM as the fleet page does.

Reports: time to create the data, the median time of listing every workload with its tenant,
cluster, GPU type and policy (what the page renders), the median time of one page of 100, and
the number of queries each takes (it must not grow with the number of rows).
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.fleet import create_fleet  # noqa: E402
from scaling.models import Workload  # noqa: E402

TENANTS, POLICIES, REPEATS = 1_000, 10_000, 7


def populate() -> float:
    started = time.perf_counter()
    create_fleet(TENANTS, POLICIES)
    return time.perf_counter() - started


def list_rows(limit: int | None) -> tuple[float, int, int]:
    """List like the fleet page: the related objects it shows, in one query."""
    queryset = Workload.objects.select_related("tenant", "cluster", "gpu_type", "policy")
    if limit is not None:
        queryset = queryset[:limit]
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        rows = [
            (w.tenant.slug, w.cluster.name, w.gpu_type.name, w.policy.algorithm, w.policy.target)
            for w in queryset
        ]
        elapsed = time.perf_counter() - started
    return elapsed, len(queries), len(rows)


def main() -> None:
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        create_s = populate()
        results: dict[str, Any] = {
            "tenants": TENANTS,
            "policies": POLICIES,
            "create_s": round(create_s, 3),
            "database": connection.vendor,
        }
        for label, limit in (("all", None), ("page_100", 100)):
            runs = [list_rows(limit) for _ in range(REPEATS)]
            results[label] = {
                "rows": runs[0][2],
                "median_ms": round(statistics.median(r[0] for r in runs) * 1000, 2),
                "queries": runs[0][1],
            }
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    out = ROOT / "bench" / "results" / "orm_listing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(
        f"orm_listing [{results['database']}]: created {TENANTS} tenants + {POLICIES} policies "
        f"in {results['create_s']} s; list all {results['all']['rows']} rows: "
        f"{results['all']['median_ms']} ms median, {results['all']['queries']} query; "
        f"page of 100: {results['page_100']['median_ms']} ms, "
        f"{results['page_100']['queries']} query"
    )


if __name__ == "__main__":
    main()
