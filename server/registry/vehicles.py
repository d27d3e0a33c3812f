"""Residents' vehicles: plate -> unit, person, phone, the list a property office moves cars with (挪车).

Imported as CSV like the rest of the registry (``PUT /api/registry/vehicles``, columns ``plate, unit,
person, phone``; the import replaces the whole list), exported as the same CSV. Plates are kept in
the contract's form (``京AD12345``): a dot, dash or space a clerk typed is dropped, letters are upper-cased,
and anything else that is not a mainland plate is refused with its line and field. The list stays
on the server: no plate list is sent to edge nodes.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from sqlalchemy.orm import Session

from gridwatch.broker.contract import PLATE_TEXT_PATTERN
from gridwatch.server.models import ResidentVehicle, Ticket

CSV_COLUMNS = ("plate", "unit", "person", "phone")
_SEPARATORS = re.compile(r"[\s·•・.\-—_]")


class Vehicle(BaseModel):
    """One row of the list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plate: Annotated[str, StringConstraints(pattern=PLATE_TEXT_PATTERN)] = Field(
        description="The plate number, e.g. 京AD12345 (京A·D12345 is accepted and stored without the dot).")
    unit: str = Field(min_length=1, max_length=200, description="The household, e.g. 3栋2单元1502.")
    person: str = Field(min_length=1, max_length=200)
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-]{4,30}$")]

    @field_validator("plate", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return _SEPARATORS.sub("", value).upper() if isinstance(value, str) else value


def from_csv(text: str) -> list[Vehicle]:
    """Parse the list; raises ValueError naming the line and the field."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or set(CSV_COLUMNS) - set(rows[0]):
        raise ValueError(f"vehicle CSV needs the columns {', '.join(CSV_COLUMNS)}")
    vehicles, seen = [], {}
    for number, row in enumerate(rows, start=2):
        try:
            vehicle = Vehicle.model_validate({k: (row[k] or "").strip() for k in CSV_COLUMNS})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ValueError(f"vehicle CSV line {number}: {first['loc'][0]}: {first['msg']}") from None
        if vehicle.plate in seen:
            raise ValueError(f"vehicle CSV line {number}: plate: {vehicle.plate} is already on line "
                             f"{seen[vehicle.plate]}")
        seen[vehicle.plate] = number
        vehicles.append(vehicle)
    return vehicles


def to_csv(vehicles: list[Vehicle]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([v.plate, v.unit, v.person, v.phone] for v in vehicles)
    return out.getvalue()


def replace(session: Session, vehicles: list[Vehicle]) -> None:
    """Make ``vehicles`` the whole list, in the caller's transaction."""
    session.execute(sa.delete(ResidentVehicle))
    session.add_all(ResidentVehicle(**v.model_dump()) for v in vehicles)


def export(session: Session) -> list[Vehicle]:
    return [Vehicle(plate=r.plate, unit=r.unit, person=r.person, phone=r.phone)
            for r in session.scalars(sa.select(ResidentVehicle).order_by(ResidentVehicle.plate))]


def owner_of(session: Session, plate: str) -> Vehicle | None:
    """The resident whose vehicle has this plate, if the list has it."""
    row = session.get(ResidentVehicle, plate)
    return None if row is None else Vehicle(plate=row.plate, unit=row.unit, person=row.person, phone=row.phone)


def owner_of_ticket(session: Session, ticket_id: int) -> Vehicle | None:
    """The resident whose vehicle's plate the edge read on this (fire-lane) ticket, if the list has it."""
    plate = session.scalar(sa.select(Ticket.plate).where(Ticket.id == ticket_id))
    text = (plate or {}).get("text")
    return owner_of(session, text) if text else None
