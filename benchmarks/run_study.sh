#!/bin/bash
# Runs both bundled studies (as `make study` does) and records each whole process's wall time, the
# load average and the commit in docs/study.log, which benchmarks/write_study.py quotes.
#   bash benchmarks/run_study.sh && python benchmarks/write_study.py lightning_logs/study-pararel lightning_logs/study-pararel-n
set -u
cd "$(dirname "$0")/.."
SELFENS=${SELFENS:-.venv/bin/selfens}
LOG=${LOG:-docs/study.log}
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) commit $(git rev-parse --short HEAD)" > "$LOG"
for config in configs/study/pararel.yaml configs/study/pararel_n.yaml; do
  start=$(date +%s.%N)
  "$SELFENS" study --config "$config"
  rc=$?
  end=$(date +%s.%N)
  echo "selfens study --config $config: rc=$rc wall_s=$(python3 -c "print(round($end - $start, 1))") end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$LOG"
  [ $rc -eq 0 ] || exit $rc
done
