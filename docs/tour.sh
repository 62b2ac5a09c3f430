#!/usr/bin/env bash
# The README's HTTP tour, runnable as it stands: start `make demo` in one terminal, then run
# `bash docs/tour.sh` in another, from the repository root. It writes batch.zip and pr.png into the current
# directory. S (the service) and DEMO_STATE (the demo's state dir, `demo_state` for `make demo`) point it
# at another server. Every curl has -f: an HTTP error stops the tour and shows the error body.
set -euo pipefail
# tour: the README shows the lines from here to the end, verbatim
S=${S:-http://127.0.0.1:8000}
DEMO_STATE=${DEMO_STATE:-demo_state}
curl -fsS $S/v2/health/live; echo                            # liveness: the process answers
curl -fsS $S/v2/health/ready; echo                           # readiness: models loaded, workers alive
curl -fsS $S/v1/checkpoints; echo                            # files under SMARTCASH_CHECKPOINT_ROOT
curl -fsS -X POST $S/v1/models -H 'content-type: application/json' \
     -d '{"name": "best", "checkpoint": "demo_yolov5n.safetensors"}'; echo   # 201; same bytes: reused
curl -fsS $S/v1/models; echo
# a dataset under SMARTCASH_DATA_ROOT; imgsz defaults to the checkpoint's; 202 + Location
ID=$(curl -fsS -X POST $S/v1/validations -H 'content-type: application/json' \
     -d '{"model": "best", "dataset": "demo", "split": "val"}' \
     | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "job $ID"
curl -fsSN $S/v1/validations/$ID/events                      # SSE: progress ..., then the final status
curl -fsS $S/v1/validations/$ID | python3 -c 'import json, sys; job = json.load(sys.stdin)
print(job["status"], "imgsz", job["result"]["params"]["imgsz"], "mAP50", round(job["result"]["metrics"]["map50"], 3))'
curl -fsS "$S/v1/validations/$ID/images?sort=fp&limit=3"; echo   # per-image rows, worst first
curl -fsS $S/v1/validations/$ID/plots; echo                  # PNG names and URLs
curl -fsS -o pr.png $S/v1/validations/$ID/plots/pr_curve.png
# an upload: images with same-stem .txt labels, flat or in images/ + labels/ folders, or one archive
python3 -m zipfile -c batch.zip $DEMO_STATE/data/demo/images $DEMO_STATE/data/demo/labels
curl -fsS -X POST "$S/v1/validations/upload?wait=true" -F model=best -F files=@batch.zip \
     | python3 -c 'import json, sys; job = json.load(sys.stdin); print(job["status"], job["result"]["dataset"])'
curl -fsS "$S/v1/validations?limit=5&status=succeeded" | python3 -c 'import json, sys
print([job["id"] for job in json.load(sys.stdin)["items"]])'
curl -fsS $S/v1/cache; echo                                  # get_cache_info(): process-wide totals
curl -fsS -X DELETE $S/v1/models/best                        # 204
curl -fsS $S/metrics | grep '^smartcash_validation_jobs_total'   # Prometheus text
