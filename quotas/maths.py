"""Quota maths: pure functions of quotas and usage (usage is an input; nothing here reaches
for workloads). The control loop asks, per tenant and GPU type, how many more GPUs may be
used before a scale-up; the quotas issue deepens this with cohort borrowing and reclaim."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuotaLimit:
    tenant: str
    gpu_type: str
    nominal: int
    borrowing_limit: int | None  # None: no limit of its own (within the cohort's pool)
    in_cohort: bool  # only teams of an organisation can borrow
    max_replicas_per_workload: int | None = None

    @property
    def ceiling(self) -> int | None:
        """Most GPUs the tenant may use: nominal + borrowing limit; None when unbounded."""
        if not self.in_cohort:
            return self.nominal
        if self.borrowing_limit is None:
            return None
        return self.nominal + self.borrowing_limit

    def describe(self, used: int) -> str:
        borrowing = (
            "no borrowing limit"
            if self.borrowing_limit is None
            else (f"borrowing limit {self.borrowing_limit}")
        )
        if not self.in_cohort:
            borrowing = "no borrowing outside an organisation"
        return f"{self.tenant} {self.gpu_type} used {used}, nominal {self.nominal}, {borrowing}"


def replicas_allowed(
    limit: QuotaLimit | None, used_gpus: int, current_replicas: int, gpus_per_replica: int
) -> int | None:
    """How many more replicas the workload may add right now, or None for no limit.

    ``used_gpus`` counts the tenant's GPUs of this type across clusters, this workload's
    current replicas included. Over the ceiling (a lowered quota) the answer is 0: growth is
    blocked, but nothing running is taken away here.
    """
    if limit is None:
        return None
    allowed: list[int] = []
    if limit.ceiling is not None:
        allowed.append(max(0, (limit.ceiling - used_gpus) // gpus_per_replica))
    if limit.max_replicas_per_workload is not None:
        allowed.append(max(0, limit.max_replicas_per_workload - current_replicas))
    return min(allowed) if allowed else None
