#!/bin/bash
# vtk serve under load on loopback: ResNet-50 (224 px) and the demo segmenter, batching off / on
cd "${RUN_DIR:-.}"  # the folder holding runs/ (the two demo checkpoints)
export NO_ALBUMENTATIONS_UPDATE=1
N=${N:-300}
run() {  # name model images port extra...
  local name=$1 model=$2 images=$3 port=$4; shift 4
  vtk serve $model --port $port "$@" > serve_$name.log 2>&1 &
  local pid=$!
  for i in $(seq 1 90); do sleep 2; curl -s http://127.0.0.1:$port/health | grep -q ok && break; done
  echo "== $name ($*)"
  python tools/load_serve.py --url http://127.0.0.1:$port --images $images --requests $N --concurrency 1 8 32 --server_pid $pid
  kill $pid; wait $pid 2>/dev/null
}
R50=runs/demo_classification/version_0/checkpoints/last.ckpt
SEG=runs/demo_segmentation/version_0/checkpoints/last.ckpt
run r50_plain $R50 $HOME/.cache/vtk/demo_classification/val 8101
run r50_batch $R50 $HOME/.cache/vtk/demo_classification/val 8102 --max_batch_size 8 --batch_timeout 0.01
run seg_plain $SEG $HOME/.cache/vtk/demo_segmentation/JPEGImages 8103
run seg_batch $SEG $HOME/.cache/vtk/demo_segmentation/JPEGImages 8104 --max_batch_size 8 --batch_timeout 0.01
