#!/usr/bin/env bash
# Installs the pinned Flask and Flask-Session (crates/cloakroom-flask/tests/flask_app/
# requirements.txt) into a virtualenv at .flask-venv (gitignored), for cloakroom-flask's
# end-to-end test and its fixture generator. Idempotent: a venv that already has them is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CLOAKROOM_FLASK_VENV:-$PWD/.flask-venv}"
requirements=crates/cloakroom-flask/tests/flask_app/requirements.txt
python="${PYTHON:-python3.11}"
if [ -x "$venv/bin/python" ] && "$venv/bin/pip" freeze 2>/dev/null | grep -qix "flask-session==0.8.0" \
  && cmp -s "$requirements" "$venv/.requirements" 2>/dev/null; then
  exit 0
fi
echo "flask: installing the pinned Flask and Flask-Session into $venv" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$venv/.requirements"
