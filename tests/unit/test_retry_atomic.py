"""retry_atomic's arguments: bad values name the argument (no transaction runs).

Retries of real transactions: tests/test_retry_atomic.py.
"""

from __future__ import annotations

import pytest

from aurora_backend import retry_atomic


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="max_attempts"):
        retry_atomic(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_base"):
        retry_atomic(backoff_base=5, backoff_max=1)
    with pytest.raises(TypeError, match="using"):
        retry_atomic(using=3)
