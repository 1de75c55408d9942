"""Prefect tasks: thin wrappers over the driftloop library that add retries, timeouts and caching."""
