"""Work a request sets off that must not slow that request's own answer.

A submit wakes the worker's scheduler, which at once claims the job and creates and starts
its container: Python-heavy work (JSON, the engine client) in another thread of the same
process. Woken before the answer was written, it could take the interpreter from the
request thread (Python switches threads every 5 ms) while that thread still had to build and
send the answer. Woken once the answer is on the wire, the job starts no later for it (well
under a millisecond) and the client has its 201 first. Measured (docs/store.md), the
overlap cost a paced submit nothing beyond the runs' spread on either database.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, after_this_request, has_request_context, request

#: set in the WSGI environ by gunicorn, which closes every answer once it has written it
SERVER_CLOSES_ANSWERS = "gunicorn.socket"


def after_reply(work: Callable[[], None]) -> None:
    """Run ``work`` once the current request's answer has been sent; at once outside a
    request, or under a server that may not close the answer.

    gunicorn closes the answer after flushing its last byte (an error answer too), and the
    close runs ``work``. Werkzeug's test client leaves the close to its caller, so there (and
    under any server not known to close) ``work`` runs at once rather than at the next poll.
    """
    if not has_request_context() or SERVER_CLOSES_ANSWERS not in request.environ:
        work()
        return

    @after_this_request
    def _on_close(response: Response) -> Response:
        response.call_on_close(work)
        return response
