"""What is valid: parameters, statuses, queries, leases, studies and their statistics (no SQL, no I/O)."""
