"""The ledger's business operations, used by the views, the tests and the benchmarks."""

from __future__ import annotations

import uuid

from django.db.models import Sum

from aurora_backend import retry_atomic
from ledger.models import Account, Transfer


class InsufficientFunds(Exception):
    pass


class AccountNotFound(LookupError):
    """A transfer named an account that does not exist."""


def open_accounts(count: int, balance: int) -> list[Account]:
    """Create accounts acct-0 .. acct-{count-1}, each holding ``balance``."""
    return Account.objects.bulk_create([Account(name="acct-%d" % i, balance=balance) for i in range(count)])


def _apply(source_id: int, destination_id: int, amount: int, request_id: uuid.UUID, using: str = "default") -> Transfer:
    accounts = Account.objects.using(using)
    # Lock both rows in id order so that concurrent transfers cannot deadlock each other.
    locked = {a.pk: a for a in accounts.select_for_update().filter(pk__in=[source_id, destination_id]).order_by("pk")}
    missing = sorted({source_id, destination_id} - set(locked))
    if missing:
        raise AccountNotFound("no account with id %s" % ", ".join(map(str, missing)))
    source, destination = locked[source_id], locked[destination_id]
    if source.balance < amount:
        raise InsufficientFunds("account %s holds %d < %d" % (source.name, source.balance, amount))
    accounts.filter(pk=source_id).update(balance=source.balance - amount)
    accounts.filter(pk=destination_id).update(balance=destination.balance + amount)
    return Transfer.objects.using(using).create(
        request_id=request_id, source_id=source_id, destination_id=destination_id, amount=amount
    )


def transfer(
    source_id: int,
    destination_id: int,
    amount: int,
    request_id: uuid.UUID | None = None,
    using: str = "default",
) -> Transfer:
    """Move ``amount`` from one account to another, in one transaction, re-run on rollback.

    ``using`` is the database alias (default "default").
    """
    if amount <= 0 or source_id == destination_id:
        raise ValueError("a transfer moves a positive amount between two different accounts")
    request_id = request_id or uuid.uuid4()
    return retry_atomic(_apply, using=using)(source_id, destination_id, amount, request_id, using)


def totals() -> dict:
    """The ledger's invariant: ``total`` never changes, whatever happens to the database."""
    return {
        "total": Account.objects.aggregate(total=Sum("balance"))["total"] or 0,
        "accounts": Account.objects.count(),
        "transfers": Transfer.objects.count(),
    }
