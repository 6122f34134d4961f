"""Tests of the Docker image and the compose cluster, and of the database roles they use."""
