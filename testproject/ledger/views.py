import json
import uuid

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ledger import services
from ledger.models import Account


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"app": "ledger", "endpoints": ["/accounts/", "/transfer/", "/total/"]})


@require_GET
def accounts(request: HttpRequest) -> JsonResponse:
    rows = list(Account.objects.order_by("pk").values("id", "name", "balance")[:100])
    return JsonResponse({"accounts": rows})


@require_GET
def total(request: HttpRequest) -> JsonResponse:
    return JsonResponse(services.totals())


@csrf_exempt
@require_POST
def transfer(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
        source, destination, amount = int(body["source"]), int(body["destination"]), int(body["amount"])
        request_id = uuid.UUID(body["request_id"]) if body.get("request_id") else None
    except (KeyError, TypeError, ValueError) as err:
        return JsonResponse(
            {"error": "expected JSON {source, destination, amount[, request_id]}: %s" % err}, status=400
        )
    try:
        done = services.transfer(source, destination, amount, request_id)
    except services.InsufficientFunds as err:
        return JsonResponse({"error": str(err)}, status=409)
    except services.AccountNotFound as err:
        return JsonResponse({"error": str(err)}, status=404)
    except ValueError as err:
        return JsonResponse({"error": str(err)}, status=400)
    return JsonResponse({"id": done.pk, "request_id": str(done.request_id)}, status=201)
