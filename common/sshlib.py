"""asyncssh, imported without the deprecation warnings it sets off in cryptography >= 51.

asyncssh (2.24) still names DSA types at import time, which cryptography 51 deprecates. The
warnings are not ours to fix and, printed at every start of `surge`, they would bury the
one-line errors the command line promises. Only that import is silenced: warnings raised
later, by asyncssh or anyone else, still show.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
