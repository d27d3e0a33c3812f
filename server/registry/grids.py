"""The grid registry: district → street → community → grid, their people, departments, cameras.

A ticket is placed in the registry once, when it opens (the camera's grid and that grid's
community, street and district are copied onto it), so indicators group by a column and
escalation knows whom to notify one level up without walking the tree on every sweep.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from gridwatch.broker.contract import Id
from gridwatch.server.models import CameraBinding, Unit, UnitMember

SAMPLE_PATH = Path(__file__).resolve().parents[1] / "config" / "registry.yaml"
CSV_COLUMNS = ("kind", "id", "name", "parent_id", "leader", "members", "cameras")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Person(_Doc):
    id: Id
    name: str = Field(min_length=1)


class CameraRef(_Doc):
    site_id: Id
    camera_id: Id


class Grid(_Doc):
    id: Id
    name: str
    leader: Person | None = None
    workers: list[Person] = Field(default_factory=list)
    cameras: list[CameraRef] = Field(default_factory=list)


class Community(_Doc):
    id: Id
    name: str
    leader: Person | None = None
    grids: list[Grid] = Field(default_factory=list)


class Street(_Doc):
    id: Id
    name: str
    leader: Person | None = None
    communities: list[Community] = Field(default_factory=list)


class District(_Doc):
    id: Id
    name: str
    leader: Person | None = None


class Department(_Doc):
    id: Id
    name: str
    members: list[Person] = Field(default_factory=list)


class RegistryDoc(_Doc):
    """The registry as YAML/JSON: one tree, ids unique across every unit."""

    district: District
    streets: list[Street] = Field(default_factory=list)
    departments: list[Department] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> RegistryDoc:
        ids = [self.district.id, *(d.id for d in self.departments)]
        cameras: list[tuple[str, str]] = []
        for street in self.streets:
            ids.append(street.id)
            for community in street.communities:
                ids.append(community.id)
                for grid in community.grids:
                    ids.append(grid.id)
                    cameras += [(c.site_id, c.camera_id) for c in grid.cameras]
        for what, values in (("unit id", ids), ("camera", cameras)):
            duplicates = sorted({str(v) for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"{what} listed twice: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True)
class GridPath:
    """Where a camera sits: its grid and the grid's ancestors."""

    grid_id: str
    community_id: str | None
    street_id: str | None
    district_id: str | None

    def at_level(self, level: str) -> str | None:
        return {"grid": self.grid_id, "community": self.community_id, "street": self.street_id,
                "district": self.district_id}[level]


def load_sample() -> RegistryDoc:
    return RegistryDoc.model_validate(yaml.safe_load(SAMPLE_PATH.read_text(encoding="utf-8")))


def replace(session: Session, doc: RegistryDoc) -> None:
    """Make ``doc`` the whole registry, in the caller's transaction (committed by the caller)."""
    for model in (CameraBinding, UnitMember, Unit):
        session.execute(sa.delete(model))
    units: list[dict] = []
    members: list[dict] = []
    cameras: list[dict] = []

    def unit(kind: str, node: BaseModel, parent: str | None) -> None:
        units.append({"id": node.id, "kind": kind, "name": node.name, "parent_id": parent})
        leader = getattr(node, "leader", None)
        if leader is not None:
            members.append({"unit_id": node.id, "person_id": leader.id, "name": leader.name, "role": "leader"})
        for person in getattr(node, "workers", None) or getattr(node, "members", None) or []:
            members.append({"unit_id": node.id, "person_id": person.id, "name": person.name, "role": "member"})

    unit("district", doc.district, None)
    for street in doc.streets:
        unit("street", street, doc.district.id)
        for community in street.communities:
            unit("community", community, street.id)
            for grid in community.grids:
                unit("grid", grid, community.id)
                cameras += [{"site_id": c.site_id, "camera_id": c.camera_id, "grid_id": grid.id}
                            for c in grid.cameras]
    for department in doc.departments:
        unit("department", department, doc.district.id)
    for model, rows in ((Unit, units), (UnitMember, members), (CameraBinding, cameras)):
        if rows:
            session.execute(sa.insert(model), rows)


def export(session: Session) -> RegistryDoc | None:
    """The stored registry as a document, or None when none was imported."""
    units = {u.id: u for u in session.scalars(sa.select(Unit))}
    district = next((u for u in units.values() if u.kind == "district"), None)
    if district is None:
        return None
    people: dict[str, list[UnitMember]] = {}
    for m in session.scalars(sa.select(UnitMember).order_by(UnitMember.id)):
        people.setdefault(m.unit_id, []).append(m)
    cams: dict[str, list[CameraRef]] = {}
    for c in session.scalars(sa.select(CameraBinding).order_by(CameraBinding.site_id, CameraBinding.camera_id)):
        cams.setdefault(c.grid_id, []).append(CameraRef(site_id=c.site_id, camera_id=c.camera_id))

    def leader(unit_id: str) -> Person | None:
        return next((Person(id=m.person_id, name=m.name) for m in people.get(unit_id, []) if m.role == "leader"),
                    None)

    def crew(unit_id: str) -> list[Person]:
        return [Person(id=m.person_id, name=m.name) for m in people.get(unit_id, []) if m.role == "member"]

    def children(parent: str, kind: str) -> list[Unit]:
        return sorted((u for u in units.values() if u.parent_id == parent and u.kind == kind), key=lambda u: u.id)

    return RegistryDoc(
        district=District(id=district.id, name=district.name, leader=leader(district.id)),
        streets=[Street(id=s.id, name=s.name, leader=leader(s.id), communities=[
            Community(id=c.id, name=c.name, leader=leader(c.id), grids=[
                Grid(id=g.id, name=g.name, leader=leader(g.id), workers=crew(g.id), cameras=cams.get(g.id, []))
                for g in children(c.id, "grid")])
            for c in children(s.id, "community")])
            for s in children(district.id, "street")],
        departments=[Department(id=d.id, name=d.name, members=crew(d.id))
                     for d in children(district.id, "department")],
    )


def _person(p: Person) -> str:
    return f"{p.id}:{p.name}"


def to_csv(doc: RegistryDoc) -> str:
    """One row per unit; people as ``id:name`` and cameras as ``site/camera``, ``;``-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow(["district", doc.district.id, doc.district.name, "",
                     _person(doc.district.leader) if doc.district.leader else "", "", ""])
    for street in doc.streets:
        writer.writerow(["street", street.id, street.name, doc.district.id,
                         _person(street.leader) if street.leader else "", "", ""])
        for community in street.communities:
            writer.writerow(["community", community.id, community.name, street.id,
                             _person(community.leader) if community.leader else "", "", ""])
            for grid in community.grids:
                writer.writerow(["grid", grid.id, grid.name, community.id,
                                 _person(grid.leader) if grid.leader else "",
                                 ";".join(_person(p) for p in grid.workers),
                                 ";".join(f"{c.site_id}/{c.camera_id}" for c in grid.cameras)])
    for department in doc.departments:
        writer.writerow(["department", department.id, department.name, doc.district.id, "",
                         ";".join(_person(p) for p in department.members), ""])
    return out.getvalue()


def from_csv(text: str) -> RegistryDoc:
    """Parse :func:`to_csv` output (parents before children); raises ValueError naming the row."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or set(CSV_COLUMNS) - set(rows[0]):
        raise ValueError(f"registry CSV needs the columns {', '.join(CSV_COLUMNS)}")

    def people(cell: str) -> list[dict]:
        found = []
        for item in filter(None, (cell or "").split(";")):
            pid, _, name = item.partition(":")
            found.append({"id": pid, "name": name or pid})
        return found

    tree: dict[str, dict] = {}
    doc: dict = {"streets": [], "departments": []}
    for number, row in enumerate(rows, start=2):
        kind, uid, parent = row["kind"], row["id"], row["parent_id"]
        node: dict = {"id": uid, "name": row["name"]}
        if row["leader"]:
            node["leader"] = people(row["leader"])[0]
        if kind == "district":
            doc["district"] = node
        elif kind == "department":
            doc["departments"].append({**node, "members": people(row["members"])})
            continue
        elif kind in ("street", "community", "grid"):
            container = {"street": "streets", "community": "communities", "grid": "grids"}[kind]
            if kind == "street":
                doc["streets"].append(node)
            elif parent not in tree:
                raise ValueError(f"registry CSV line {number}: parent {parent!r} of {uid!r} is not listed above it")
            else:
                tree[parent].setdefault(container, []).append(node)
            if kind == "grid":
                node["workers"] = people(row["members"])
                node["cameras"] = [dict(zip(("site_id", "camera_id"), c.split("/", 1), strict=True))
                                   for c in filter(None, row["cameras"].split(";"))]
        else:
            raise ValueError(f"registry CSV line {number}: unknown kind {kind!r}")
        tree[uid] = node
    return RegistryDoc.model_validate(doc)


def locate(session: Session, site_id: str, camera_id: str) -> GridPath | None:
    """The grid a camera watches, with the grid's community, street and district."""
    grid_id = session.scalar(sa.select(CameraBinding.grid_id).where(
        CameraBinding.site_id == site_id, CameraBinding.camera_id == camera_id))
    if grid_id is None:
        return None
    chain = [grid_id]
    while len(chain) < 4:
        parent = session.scalar(sa.select(Unit.parent_id).where(Unit.id == chain[-1]))
        if parent is None:
            break
        chain.append(parent)
    chain += [None] * (4 - len(chain))
    return GridPath(*chain)


def is_member(session: Session, unit_id: str | None, person_id: str) -> bool:
    if unit_id is None:
        return False
    return session.scalar(sa.select(sa.func.count()).select_from(UnitMember).where(
        UnitMember.unit_id == unit_id, UnitMember.person_id == person_id)) > 0


def unit_exists(session: Session, unit_id: str, kind: str) -> bool:
    return session.scalar(sa.select(sa.func.count()).select_from(Unit).where(
        Unit.id == unit_id, Unit.kind == kind)) > 0
