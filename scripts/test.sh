#!/usr/bin/env bash
# The whole test suite from a fresh clone, as root: installs the Debian packages and npm dependencies it
# needs, builds, type-checks, runs the unit and end-to-end tests (vitest). Extra arguments go to vitest
# (e.g. `npm test -- test/unit`). A missing tool is an error, never a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "npm test must run as root (the end-to-end tests build network namespaces and load nftables rulesets)" >&2
  exit 1
fi

scripts/deps.sh
# Types (strict, no unused locals or parameters), then typescript-eslint's recommended rules.
npx tsc -p tsconfig.test.json --noEmit
npx eslint src test

# Labs of earlier runs that died before cleaning up (the owner pid is in the name): remove them.
sweep() {
  for d in /dev/shm/ftpe*x*; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    pid=${name#ftpe}
    pid=${pid%%x*}
    if ! kill -0 "$pid" 2>/dev/null; then LAB=$name scripts/lab.sh down || true; fi
  done
}
sweep
status=0
npx vitest run "$@" || status=$?
sweep
# The whole suite ends with the benchmark's smoke test (npm run bench -- --quick, one to two minutes): it
# fails the run if the bench breaks, not when a target is missed (--quick judges none).
if [ $# -eq 0 ]; then
  echo "bench: npm run bench -- --quick"
  node bench/bench.mjs --quick --out "${TMPDIR:-/tmp}/ftp-proxy-bench-quick.json" || status=$?
fi
exit $status
