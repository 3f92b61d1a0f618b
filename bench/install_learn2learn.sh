#!/usr/bin/env bash
# Install learn2learn 0.2.0, a test oracle and benchmark peer (never a runtime dependency of fewshot).
# learn2learn 0.2.0's sdist ships C files that do not build on Python >= 3.11: regenerate them with Cython.
# Usage:
#   bash bench/install_learn2learn.sh            # into the project's .venv (what the oracle tests import)
#   bash bench/install_learn2learn.sh DIR        # into a separate venv DIR that sees .venv's packages
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_VENV="$(pwd)/.venv"
VENV="${1:-$MAIN_VENV}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")" != "$MAIN_VENV" ]; then
  python3 -m venv "$VENV"
  SITE_MAIN="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  SITE_NEW="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # addsitedir (not a bare path) so the main venv's own .pth files (the editable fewshot install) run too
  echo "import site; site.addsitedir('$SITE_MAIN')" > "$SITE_NEW/main-venv.pth"
fi
# what "import learn2learn" imports, and the Cython that regenerates its C files
"$VENV/bin/pip" install -q "cython<3.1" setuptools wheel requests gym scipy
# learn2learn imports torchvision, which pins one exact torch: the build matching the torch installed
# (the constraint keeps pip from replacing it). With torch's CPU wheel, take torchvision from the same
# CPU index (pip install torchvision --index-url https://download.pytorch.org/whl/cpu), as the README's
# CPU install does for torch: a CUDA torchvision does not load beside a CPU torch.
TORCH_VERSION="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))')"
"$VENV/bin/pip" install -q torchvision --constraint <(echo "torch==$TORCH_VERSION")
"$VENV/bin/pip" download -q --no-binary :all: --no-deps learn2learn==0.2.0 -d "$WORK"
tar -xzf "$WORK"/learn2learn-0.2.0.tar.gz -C "$WORK"
(cd "$WORK/learn2learn-0.2.0" && "$VENV/bin/cython" -3 learn2learn/data/*.pyx)
"$VENV/bin/pip" install -q --no-build-isolation --no-deps "$WORK/learn2learn-0.2.0"
"$VENV/bin/python" -W ignore -c "import learn2learn; print('learn2learn', learn2learn.__version__, 'in', '$VENV')"
