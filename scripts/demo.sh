#!/usr/bin/env bash
# README command (1): set up, generate data, train BehaveGPT, Decision Mamba, the Graph-LSTM and
# Neuroformer, edit a behavior out of BehaveGPT (model surgery), register and review them in
# MLflow, serve them with BentoML, send example requests (including histories flagged by the
# behavior probe through POST /probe, LunarLander episodes flown through POST /act, highway
# scenes forecast through POST /trajectory/forecast, a held-out trial's spikes decoded through
# POST /neural/decode and held-out series explained by TimeX and Integrated Gradients through
# POST /explain), print where to look, stop cleanly.
#   BEHAVE_DEMO_EVENTS   events to generate (default 1,000,000)
#   BEHAVE_PORT          service port on 127.0.0.1 (default 3000)
#   BEHAVE_KEEP_SERVING  set to 1 to leave the service running at the end
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { printf '\n\033[1m==> [%ss] %s\033[0m\n' "$(( $(date +%s) - started ))" "$*"; }

step "setting up .venv (torch, lightning, mlflow, bentoml, ...)"
bash scripts/setup.sh
. .venv/bin/activate
export BENTOML_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
events=${BEHAVE_DEMO_EVENTS:-1000000}
port=${BEHAVE_PORT:-3000}
url="http://127.0.0.1:${port}"

step "generating ${events} app-usage events in 4 domains -> data/user-events"
behave data generate user-events --out data/user-events --events "$events"

step "training BehaveGPT (DRO objective) on social, commerce, media; logging to MLflow"
behave fit --config pipelines/behavegpt.yaml --trainer.enable_model_summary false

step "reviewing the new version (@challenger) against @champion on the fixed test split"
behave promote behavegpt

step "model surgery: probe BehaveGPT for 'next event is risky.*', edit the MLP rows the paper picks (alpha x top-k swept on validation users), register the edit with its lineage"
behave surgery --behavior-family risky

step "reviewing the edited version: promoted only if it cuts top-1 risky predictions >= 50% with recall@10 elsewhere within 2%"
behave promote behavegpt

step "recording 100k LunarLander transitions from a noisy scripted lander (D4RL 'medium')"
behave data generate offline-rl --out data/offline-rl/lunarlander-medium --env lunarlander \
  --quality medium --num-transitions 100000 --no-progress

# A short run of the real pipeline (the full one: 3-4 epochs of 250 steps, see README).
step "training Decision Mamba on it (2 short epochs, rollouts in the simulator after each)"
behave fit --config pipelines/decision-mamba-lunarlander-medium.yaml \
  --trainer.max_epochs 2 --data.windows_per_epoch 3200 --model.eval_episodes 5 \
  --trainer.enable_model_summary false

step "reviewing the new Decision Mamba version: both versions fly the same 10 fixed-seed episodes"
behave promote decision_mamba

step "simulating 100 highway scenes (highway-env IDM/MOBIL drivers of 3 styles, 10 Hz) -> data/traffic-demo"
behave data generate traffic --out data/traffic-demo --scenes 100 --workers 2 --no-progress

# A short run of the real pipeline (the full one: 600 scenes, 8 epochs, see README).
step "training the Graph-LSTM on it (4 short epochs; ADE/FDE in metres beside constant velocity)"
behave fit --config pipelines/graph-lstm.yaml --data.data_dir data/traffic-demo \
  --trainer.max_epochs 4 --trainer.enable_model_summary false

step "reviewing the new Graph-LSTM version on the held-out scenes (FDE at 5 s decides)"
behave promote graph_lstm

step "simulating a spiking circuit (100 neurons, 5 hubs, drifting gratings, running speed) -> data/spikes-demo"
behave data generate spikes --out data/spikes-demo --trials 100 --no-progress

# A short run of the real pipeline (the full one: 200 trials, 3 epochs, see README).
step "pretraining Neuroformer on it (1 short epoch; few-shot behavior decoding, connectivity, generation scored)"
behave fit --config pipelines/neuroformer.yaml --data.data_dir data/spikes-demo \
  --trainer.max_epochs 1 --data.stride_bins 5 --model.few_shot_epochs 10 \
  --model.generate_trials 4 --trainer.enable_model_summary false

step "generating FreqShapes (TimeX's synthetic benchmark: 4 classes, where the signal is is known) -> data/timeseries/freqshapes"
behave data generate timeseries-synth --name freqshapes

# Short runs of the real pipelines (the full ones: 20 epochs each, see README).
step "training the time-series classifier to explain (8 epochs; IG and saliency scored against the truth)"
behave fit --config pipelines/tsclassifier-freqshapes.yaml --trainer.max_epochs 8 \
  --trainer.enable_model_summary false

step "training TimeX against behave.tsclassifier.freqshapes@champion (6 epochs; registered with its lineage)"
behave fit --config pipelines/timex-freqshapes.yaml --trainer.max_epochs 6 \
  --trainer.enable_model_summary false

step "starting the service on ${url}"
log=$(mktemp -t behave-serve.XXXX.log)
behave serve --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
server=$!
stop() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
}
trap stop EXIT
for _ in $(seq 1 120); do
  if curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "the service exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 1
done
curl -fsS "$url/readyz" >/dev/null

# A real 12-event history from the generated log, as the request body.
history=$(python - <<'EOF'
import json, polars as pl
events = pl.read_parquet("data/user-events/events.parquet").filter(pl.col("domain") == "commerce")
user = events["user_id"][0]
rows = events.filter(pl.col("user_id") == user).head(12)
print(json.dumps([
    {"behavior": r["behavior"], "timestamp": r["timestamp"].isoformat(), "location": r["location"], "domain": r["domain"]}
    for r in rows.iter_rows(named=True)
]))
EOF
)
# pretty JSON, at most N lines (no `| head`: under pipefail the writer's broken pipe ends the demo)
show() {
  python -c 'import json, sys
lines = json.dumps(json.load(sys.stdin), indent=2).splitlines()
n = int(sys.argv[1])
print("\n".join(lines[:n]) + ("\n  ..." if len(lines) > n else ""))' "${1:-40}"
}

step "POST /next_behavior (top 5 next behaviors after a 12-event history)"
curl -sS -X POST "$url/next_behavior" -H 'content-type: application/json' \
  -d "{\"requests\": [{\"history\": ${history}, \"top_k\": 5}]}" | show

step "POST /generate (10 future behaviors, seeded)"
curl -sS -X POST "$url/generate" -H 'content-type: application/json' \
  -d "{\"history\": ${history}, \"num_steps\": 10, \"temperature\": 0.8, \"top_k\": 20, \"seed\": 7}" | show

step "a bad request: an unknown behavior is a 400 naming the field"
curl -sS -w '\nHTTP %{http_code}\n' -X POST "$url/next_behavior" -H 'content-type: application/json' \
  -d '{"requests": [{"history": [{"behavior": "no.such.behavior"}]}]}'

step "POST /probe: real histories flagged by the risky-behavior probe; what the (edited) model recommends"
python scripts/probe_client.py --url "$url" --data-dir data/user-events

step "GET /policy (the served Decision Mamba: sizes, bounds, default target return)"
curl -fsS "$url/policy" | show 20

step "flying 2 LunarLander episodes through POST /act sessions (one HTTP call per action)"
python scripts/lander_client.py --url "$url" --episodes 2

step "POST /act stateless: the action after a 2-step history"
curl -sS -X POST "$url/act" -H 'content-type: application/json' -d '{
  "observations": [[0.0, 1.4, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0], [0.0, 1.39, 0.0, -0.25, 0.0, 0.0, 0.0, 0.0]],
  "returns_to_go": [250.0, 249.2], "actions": [[0.1, 0.0]]}' | show

step "a bad request: a 3-number observation for an 8-number state is a 400 naming the field"
curl -sS -w '\nHTTP %{http_code}\n' -X POST "$url/act" -H 'content-type: application/json' \
  -d '{"observation": [0.0, 1.4, 0.0]}'

step "POST /trajectory/forecast: two held-out (test) scenes, 2 s observed in, 5 s forecast out, vs truth"
python scripts/traffic_client.py --url "$url" --data-dir data/traffic-demo --scenes 2

step "a bad request: a 3-position track is a 400 naming the field"
curl -sS -w '\nHTTP %{http_code}\n' -X POST "$url/trajectory/forecast" -H 'content-type: application/json' \
  -d '{"scenes": [{"agents": [{"agent_id": "a", "track": [[0, 0], [2.5, 0], [5, 0]]}]}]}'

step "Neuroformer on a held-out trial: POST /neural/decode, POST /neural/generate, GET /neural/connectivity"
python scripts/neural_client.py --url "$url" --data-dir data/spikes-demo

step "a bad request: unsorted spikes are a 400 with the reason"
curl -sS -w '\nHTTP %{http_code}\n' -X POST "$url/neural/decode" -H 'content-type: application/json' \
  -d '{"spikes": [{"neuron": 3, "time": 0.20}, {"neuron": 5, "time": 0.10}]}'

step "POST /explain: held-out FreqShapes series explained by TimeX and Integrated Gradients, beside the truth"
python scripts/explain_client.py --url "$url" --data-dir data/timeseries/freqshapes --png-dir explanations

step "a bad request: an unknown explanation method is a 400 listing the valid ones"
curl -sS -w '\nHTTP %{http_code}\n' -X POST "$url/explain" -H 'content-type: application/json' \
  -d '{"family": "tsclassifier", "model": "freqshapes", "method": "shap", "inputs": [[[0.0]]]}'

step "done in $(( $(date +%s) - started )) s. Where to look:"
cat <<EOF
  service        ${url}/  (Swagger UI; spec at ${url}/docs.json; service log: ${log})
  MLflow UI      . .venv/bin/activate && mlflow ui --backend-store-uri sqlite:///$(pwd)/mlflow/mlflow.db --port 5000
                 then open http://127.0.0.1:5000 (experiments "behavegpt", "decision-mamba",
                 "graph-lstm", "neuroformer", "tsclassifier-freqshapes", "timex-freqshapes",
                 "surgery"; models "behave.behavegpt" (the newest: the edit, lineage in its tags),
                 "behave.probe.behavegpt.risky", "behave.decision_mamba", "behave.graph_lstm",
                 "behave.neuroformer", "behave.tsclassifier.freqshapes", "behave.timex.freqshapes")
  heatmaps       explanations/*.png (TimeX and IG over the explained series)
  serve again    . .venv/bin/activate && behave serve
EOF
if [ "${BEHAVE_KEEP_SERVING:-0}" = "1" ]; then
  trap - EXIT
  echo "  the service keeps running (pid ${server}); stop it with: kill ${server}"
else
  echo "  stopping the service"
fi
