"""The console's message catalogues: both languages have the same keys, every key the code asks for
exists, and every value the server can send (event types, stages, actions, roles) has a label."""

from __future__ import annotations

import json
import re

from gridwatch.broker.contract import EventType, Phase
from gridwatch.server.api.routers.console import CONSOLE_DIR
from gridwatch.server.registry import accounts
from gridwatch.server.tickets import false_alarms, lifecycle

CATALOGUES = {lang: json.loads((CONSOLE_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
              for lang in ("zh-CN", "en")}
# t("literal.key") in the code; keys built from values (label("type", ...)) are checked below.
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z_0-9]+)+)["']""")
# Audit entries the server writes besides the lifecycle rules' actions.
SYSTEM_ACTIONS = ("open", "merge", "sla_warning", "escalate")


def test_both_languages_have_the_same_keys_and_no_empty_text() -> None:
    zh, en = CATALOGUES["zh-CN"], CATALOGUES["en"]
    assert sorted(zh) == sorted(en)
    assert all(zh.values()) and all(en.values())
    for key in zh:  # the same placeholders in both languages
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key


def test_every_key_the_console_asks_for_is_in_the_catalogues() -> None:
    used = set()
    for script in (CONSOLE_DIR / "js").rglob("*.js"):
        used |= set(LITERAL_KEY.findall(script.read_text(encoding="utf-8")))
    assert used, "no t(...) calls found: the pattern is out of date"
    assert sorted(used - set(CATALOGUES["en"])) == []


def test_every_value_the_server_sends_has_a_label() -> None:
    values = ([f"type.{t.value}" for t in EventType] + [f"phase.{p.value}" for p in Phase]
              + [f"stage.{s.value}" for s in lifecycle.Stage] + [f"action.{a}" for a in lifecycle.RULES]
              + [f"action.{a}" for a in SYSTEM_ACTIONS] + [f"role.{r}" for r in (*accounts.ROLES, "system")]
              + [f"false_alarm.{r}" for r in false_alarms.REASONS])
    for catalogue in CATALOGUES.values():
        assert [key for key in values if key not in catalogue] == []
