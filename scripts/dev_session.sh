#!/usr/bin/env bash
# A tmux session ($AIML_TMUX_SESSION, default "aiml") with three windows: pose (port 8001), vram (port 8002) and monitor
# (nvidia-smi where there is one, the services' logs otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install tmux)" >&2; exit 1; }
session=${AIML_TMUX_SESSION:-aiml}
if tmux has-session -t "$session" 2>/dev/null; then
  echo "tmux session '$session' exists: tmux attach -t $session"
  exit 0
fi
mkdir -p logs
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  monitor="nvidia-smi -l 1"
else
  monitor="touch logs/pose_analyzer.log logs/gpu_optimizer.log; tail -F logs/pose_analyzer.log logs/gpu_optimizer.log"
fi
# make does not pass tmux's SIGHUP on to the service it runs: the trap stops the whole process
# group when the window or session is closed (tmux kill-session), so no service outlives it.
in_group() { echo "bash -c 'trap \"trap - TERM; kill 0\" HUP TERM EXIT; $1 & wait'"; }
tmux new-session -d -s "$session" -n pose "$(in_group 'make run-pose')"
tmux new-window -t "$session" -n vram "$(in_group 'make run-vram')"
tmux new-window -t "$session" -n monitor "$monitor"
if [ -t 1 ]; then tmux attach -t "$session"; else echo "started tmux session '$session': tmux attach -t $session"; fi
