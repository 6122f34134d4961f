"""Settings, and one folder per question: domain, store, read, ops."""
