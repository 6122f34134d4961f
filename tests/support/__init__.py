"""What the tests share, one module per concern; tests import each from its module.

- machine.py: the repository, MNIST, and the Redis, RabbitMQ and PostgreSQL this machine runs.
- processes.py: `trainyard` commands as real processes (a worker, gunicorn, the CLI), free ports.
- servers.py: a Redis, a PostgreSQL and a RabbitMQ of a test's own, to kill and start again.
- app.py: the Flask app of a test's settings, its test client, and submitting a run through it.
- runs.py: reading runs back from the store, fresh each time.
- waiting.py: `wait_for`, the one poll loop, and `until_finished`, for runs and studies.
- pages.py: reading HTML (elements, the runs table, PNGs) and filling in the dashboard's forms.
- browser.py: Chromium's arguments, a page per tab, the console check, screenshots.
- scale.py: the 10,000-run store the page-scale tests and `bench.runs_pages` fill.

bench/ may import these modules; nothing under tests/ imports bench (tests/test_layers.py).
"""
