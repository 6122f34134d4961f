"""The Celery worker: its app, its one task, and the plain functions the task calls."""
