#!/usr/bin/env bash
# A long training run resumed across sittings from the state committed in the repository.
#
#   bash scripts/long_run.sh start NAME   # resume (or begin) run NAME in the background
#   bash scripts/long_run.sh save NAME    # copy its checkpoints and metrics back here, to commit
#   bash scripts/long_run.sh status NAME  # its last metrics lines
#
# scripts/long-runs/NAME/ holds the run: `command` (the fewshot arguments, one line), `commit` (the
# checkout the run is pinned to: a git worktree of it runs the code, so work on main cannot change the
# code under the run) and, once saved, the run folder's config.yaml, last.pt, best.pt and metrics.jsonl.
# The run folder is $RUNS/NAME (default /tmp/fewshot-runs); the data root is $FEWSHOT_DATA, which must hold
# the run's store (e.g. `fewshot prepare omniglot --source DIR_WITH_THE_ARCHIVES --root "$FEWSHOT_DATA"`); $PYTHON
# (default python3) must have the package's requirements installed (the pinned code is put first on its path).
# Stop a run just after a checkpoint (every 500 iterations), or with SIGTERM once the pinned code saves on it.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?start, save or status}"
name="${2:?run name, a folder of scripts/long-runs}"
here="scripts/long-runs/$name"
runs="${RUNS:-/tmp/fewshot-runs}"
out="$runs/$name"
tree="$runs/$name.checkout"
python="${PYTHON:-python3}"
[[ -f "$here/command" && -f "$here/commit" ]] || { echo "error: $here needs command and commit files" >&2; exit 2; }
case "$action" in
  start)
    mkdir -p "$out"
    if [[ ! -d "$tree" ]]; then
      git worktree add --detach "$tree" "$(cat "$here/commit")" >/dev/null
    fi
    if [[ ! -f "$out/last.pt" ]]; then
      for f in config.yaml last.pt best.pt metrics.jsonl result.json; do
        [[ -f "$here/$f" ]] && cp "$here/$f" "$out/$f"
      done
    fi
    read -r -a args < "$here/command"
    # The whole background subshell writes to the log, so a caller reading this script's output
    # (a pipe) is not held open until the run ends.
    (cd "$tree" && PYTHONPATH="$PWD" exec nohup "$python" -m fewshot "${args[@]}" --out "$out" \
      --quiet) >> "$out/console.log" 2>&1 < /dev/null &
    echo "started $name in $out (code: $tree at $(cat "$here/commit"))"
    ;;
  save)
    for f in config.yaml last.pt best.pt metrics.jsonl result.json; do
      if [[ -f "$out/$f" ]]; then cp "$out/$f" "$here/$f.tmp" && mv "$here/$f.tmp" "$here/$f"; fi
    done
    echo "saved $name: $(grep -c '"train"' "$here/metrics.jsonl") train lines, last checkpoint in $here/last.pt"
    ;;
  status)
    tail -n 3 "$out/metrics.jsonl"
    ;;
  *) echo "error: unknown action '$action': use start, save or status" >&2; exit 2 ;;
esac
