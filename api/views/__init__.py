"""API views by domain noun: tenancy, fleet, scaling, and the declarative configuration."""
