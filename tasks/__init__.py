"""Prefect tasks: thin wrappers over rsft that add retries, caching and artifacts."""
