#!/usr/bin/env bash
# The quick start's first command: install whatever is missing (./install.sh; the first time
# it builds llama.cpp, 3-5 minutes), apply the migrations, and run the development server on
# http://127.0.0.1:8000. Arguments go to runserver (e.g. `./run.sh 0.0.0.0:8000`).
set -euo pipefail
cd "$(dirname "$0")"
./install.sh -q
python3 manage.py migrate
exec python3 manage.py runserver "$@"
