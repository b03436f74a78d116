"""Admission control for engines that start every job at once (docker, podman).

:mod:`pfcon.admission.policy` is the rule, pure and tested alone; :mod:`pfcon.admission.queue`
wires it to the job store and the engine's capacity for the scheduler thread.
"""
