"""Domain errors.

Every layer below the HTTP API raises only these; ``pfcon.api.errors`` maps each class to
one HTTP status in one table, so engine or library exceptions never reach a client.
"""

import errno

#: errno values that mean "storeBase is full" (answered 507, never 500)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class PfconError(Exception):
    """Base of every error pfcon reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PfconError):
    """The request is malformed or unsafe (bad form, bad zip, path escape...)."""


class Unauthorized(PfconError):
    """Missing, malformed, invalid or expired credentials."""


class JobNotFound(PfconError):
    """Neither the engine nor the storeBase knows the job."""


class JobExists(PfconError):
    """A live job already has this id."""


class OutOfOrder(PfconError):
    """A pfcon 6 job asked for before the one it depends on ended (a copy before its plugin)."""


class InvalidJob(InvalidInput):
    """The engine cannot run the job as described (missing image, unsupported resources)."""


class DataNotDeletable(PfconError):
    """Job data pfcon lacks the permissions to delete (written by a job as another user)."""


class PayloadTooLarge(PfconError):
    """An upload or its uncompressed content is over a configured cap."""


class InsufficientStorage(PfconError):
    """The storeBase ran out of space while staging data."""


class BackendUnavailable(PfconError):
    """The container engine or scheduler does not answer."""


class StorageUnavailable(PfconError):
    """The storage service does not answer."""


class StoreUnavailable(PfconError):
    """The job database does not answer."""
