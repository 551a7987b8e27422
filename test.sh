#!/usr/bin/env bash
# The quick start's second command: install whatever is missing (./install.sh), then run the
# suite. Arguments go to pytest (e.g. `./test.sh -m bench`, `./test.sh tests/chat`). With
# DATABASE_URL and REDIS_URL set it runs on PostgreSQL and Redis (README, Development).
set -euo pipefail
cd "$(dirname "$0")"
./install.sh -q
exec python3 -m pytest "$@"
