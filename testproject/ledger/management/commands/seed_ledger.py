from django.core.management.base import BaseCommand

from ledger import services
from ledger.models import Account


class Command(BaseCommand):
    help = "Create the ledger's accounts if there are none."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=10)
        parser.add_argument("--balance", type=int, default=1000)

    def handle(self, *args, accounts: int, balance: int, **options) -> None:
        if Account.objects.exists():
            self.stdout.write("ledger already seeded: %s" % services.totals())
            return
        services.open_accounts(accounts, balance)
        self.stdout.write(self.style.SUCCESS("seeded: %s" % services.totals()))
