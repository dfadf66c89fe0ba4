"""Serializers by domain noun: tenancy (tenants, memberships), fleet (GPU types, clusters,
quotas), scaling (workloads, policies, decisions)."""
