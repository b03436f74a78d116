"""What an operator sees of pfcon: Prometheus metrics and what the dashboard reads.

The job service and the starter report each step through one
:class:`~pfcon.observability.observer.Observer`; the engine and storage are wrapped once at
start-up so every call is timed; the state gauges read the job store. Nothing here calls the
engine on a request path.
"""
