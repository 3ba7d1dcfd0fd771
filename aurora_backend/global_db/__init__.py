"""Aurora Global Database: the global writer endpoint, home-region reads, write forwarding.

See docs/global_database.md. ``aurora_backend.global_db.router.router_for`` is the one hook
into the connect path; ``forwarding.install`` the one on the statement path (only for an
alias with ``write_forwarding`` set).
"""

from aurora_backend.exceptions import WriteForwardingRefused
from aurora_backend.global_db.endpoint import is_global_endpoint

__all__ = ["WriteForwardingRefused", "is_global_endpoint"]
