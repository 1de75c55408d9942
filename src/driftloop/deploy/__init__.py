"""Containers: the serving image per model version, the nginx proxy, blue-green and canary rollouts.

Used only with ``DRIFTLOOP_DEPLOY=docker``; on embedded defaults the local server follows the champion alias.
"""
