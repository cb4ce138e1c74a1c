#!/bin/sh
# Type-check the client and daemon packages (and the Krita adapter, against a small stub of
# Krita's module) as the wheel lays them out: a link tree maps the import names onto the
# design card's folders. Usage: sh scripts/typecheck.sh PATH/TO/mypy
set -eu
MYPY=${1:-mypy}
case $MYPY in */*) MYPY="$(cd "$(dirname "$MYPY")" && pwd)/$(basename "$MYPY")" ;; esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TREE=.typecheck/paintbridge
mkdir -p "$TREE"
for link in plugin backend; do
    ln -sfn "$ROOT/$link" "$TREE/$link"
done
# The Krita plugin's Qt-free adapter: in Krita it is paintbridge/document.py beside
# paintbridge/plugin/, the same place it takes here.
ln -sfn "$ROOT/krita/paintbridge/document.py" "$TREE/krita_document.py"
cd .typecheck
exec "$MYPY" --config-file "$ROOT/pyproject.toml" -p paintbridge.plugin -p paintbridge.backend \
    -m paintbridge.krita_document
