"""Baseline servers the serving benchmark measures driftloop's model server against."""
