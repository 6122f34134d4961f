"""What is valid: parameters, statuses, queries, leases, studies, statistics; no SQL, no I/O."""
