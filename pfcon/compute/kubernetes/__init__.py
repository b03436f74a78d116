"""Kubernetes: a pfcon job is a batch/v1 Job, built by :mod:`.job`, run by :mod:`.backend`.

Imports are absolute, so ``import kubernetes`` anywhere (here too) is the official client library.
"""
