"""The SQL text classifiers, all on one lexer (:mod:`aurora_backend.sql.lexer`).

- :mod:`~aurora_backend.sql.lexer`: comments (nested), literals (``''``, ``E''``, dollar
  quotes), quoted identifiers, the first keyword, the statement split;
- :mod:`~aurora_backend.sql.kinds`: the answers as enums (``Op``, ``Kind``, ``PinCause``);
- :mod:`~aurora_backend.sql.effects`: what a statement does to session state (``effects``);
- :mod:`~aurora_backend.sql.calls` and :mod:`~aurora_backend.sql.builtins`: calls of
  functions outside PostgreSQL's own (which may do anything);
- :mod:`~aurora_backend.sql.reads`: is a statement a read (safe to re-run);
- :mod:`~aurora_backend.sql.writes`: may it have changed data (read-your-writes routing);
- :mod:`~aurora_backend.sql.pins`: why RDS Proxy would pin the session.

The functions ``effects.effects`` and ``writes.writes`` are not re-exported here: their
names are their modules'.
"""

from aurora_backend.sql.effects import Effect
from aurora_backend.sql.kinds import Kind, Op, PinCause
from aurora_backend.sql.lexer import first_keyword, lex, statements
from aurora_backend.sql.pins import statement_pins
from aurora_backend.sql.reads import is_read

__all__ = [
    "Effect",
    "Kind",
    "Op",
    "PinCause",
    "first_keyword",
    "is_read",
    "lex",
    "statement_pins",
    "statements",
]
