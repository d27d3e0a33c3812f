#!/bin/sh
# Entry point of the GridWatch images: fill in broker credentials that exist only at run time, then
# exec the command (so signals reach it: SIGTERM drains the edge outbox and stops ingest cleanly).
#
# `gridwatch broker add-server / add-node` write each client's password to a file (0600). A URL or
# an edge config cannot read a file, so:
#   GRIDWATCH_MQTT_PASSWORD_FILE  read into MQTT_PASSWORD; "${MQTT_PASSWORD}" in GRIDWATCH_MQTT_URL
#                                 is replaced by it (the server's broker URL).
#   GRIDWATCH_EDGE_TEMPLATE       an edge config with ${VAR} placeholders, written with the
#   GRIDWATCH_EDGE_CONFIG         environment filled in to this path (a missing variable is an error
#                                 that names it).
set -eu

if [ -n "${GRIDWATCH_MQTT_PASSWORD_FILE:-}" ]; then
  if [ ! -r "$GRIDWATCH_MQTT_PASSWORD_FILE" ]; then
    echo "GRIDWATCH_MQTT_PASSWORD_FILE: cannot read $GRIDWATCH_MQTT_PASSWORD_FILE" >&2
    exit 2
  fi
  MQTT_PASSWORD=$(cat "$GRIDWATCH_MQTT_PASSWORD_FILE")
  export MQTT_PASSWORD
  if [ -n "${GRIDWATCH_MQTT_URL:-}" ]; then
    GRIDWATCH_MQTT_URL=$(python -c 'import os, string; print(string.Template(os.environ["GRIDWATCH_MQTT_URL"]).substitute(os.environ))')
    export GRIDWATCH_MQTT_URL
  fi
fi

if [ -n "${GRIDWATCH_EDGE_TEMPLATE:-}" ]; then
  : "${GRIDWATCH_EDGE_CONFIG:?GRIDWATCH_EDGE_CONFIG: where to write the filled-in edge config}"
  python - <<'PY'
import os
import string
import sys

template = os.environ["GRIDWATCH_EDGE_TEMPLATE"]
try:
    text = string.Template(open(template, encoding="utf-8").read()).substitute(os.environ)
except KeyError as exc:
    sys.exit(f"GRIDWATCH_EDGE_TEMPLATE: {template} needs the environment variable {exc.args[0]}")
except ValueError as exc:  # a lone "$": write "$$" for a literal dollar
    sys.exit(f"GRIDWATCH_EDGE_TEMPLATE: {template}: {exc}")
with open(os.environ["GRIDWATCH_EDGE_CONFIG"], "w", encoding="utf-8") as out:
    out.write(text)
PY
fi

exec "$@"
