"""What the customer is told, pure: an event in, an email (or nothing) out."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import EventEnvelope

REASON_TEXT = {
    "OUT_OF_STOCK": "some items are out of stock",
    "UNKNOWN_PRODUCT": "an item is not in our catalogue",
    "PAYMENT_DECLINED": "the payment was declined",
    "TECHNICAL_FAILURE": "of a technical problem on our side; you have not been charged",
}


@dataclass(frozen=True)
class Email:
    to: str | None
    subject: str
    body: str


def email_for(envelope: EventEnvelope) -> Email | None:
    data = envelope.data
    order_id = data.get("order_id", envelope.subject)
    if envelope.type == "OrderConfirmed":
        return Email(
            to=data.get("contact_email"),
            subject=f"Your order {order_id} is confirmed",
            body=f"Thank you. Your order {order_id} is confirmed; we charged {data.get('total')}.",
        )
    if envelope.type == "OrderCancelled":
        reason = REASON_TEXT.get(str(data.get("reason")), str(data.get("reason")).lower().replace("_", " "))
        return Email(
            to=data.get("contact_email"),
            subject=f"Your order {order_id} was cancelled",
            body=f"We are sorry: your order {order_id} was cancelled because {reason}.",
        )
    return None
