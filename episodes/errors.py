"""The one error type of the data side: a one-line message that says what is wrong and how to fix
it.

Usage: ``raise DataError("ways=30 > 20 classes in split 'val': lower --ways")``
"""


class DataError(ValueError):
    """Bad data or bad data request (missing archive, checksum mismatch, impossible episode,
    ...)."""
