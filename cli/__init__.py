"""The `trainyard` command: starts the processes, migrates, and talks to a server over HTTP.

It imports neither Flask, Celery nor TensorFlow: the processes it starts do.
"""
