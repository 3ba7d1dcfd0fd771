"""Accounts and transfers between them: money moves, the total never changes."""

import uuid

from django.db import models


class Account(models.Model):
    name = models.CharField(max_length=64, unique=True)
    balance = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return "%s (%d)" % (self.name, self.balance)


class Transfer(models.Model):
    #: One id per requested transfer: applying a transfer twice violates this constraint.
    request_id = models.UUIDField(default=uuid.uuid4, unique=True)
    source = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    destination = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
