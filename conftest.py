"""Shared pytest configuration: the falcon_pachinko test kit for every member."""

pytest_plugins = ["falcon_pachinko.testing.plugin"]
