cd "${RUN_DIR:-.}"; export NO_ALBUMENTATIONS_UPDATE=1
vtk serve runs/demo_classification/version_0/checkpoints/last.ckpt --port 8105 --max_batch_size 8 --batch_timeout 0.01 > serve_long.log 2>&1 &
pid=$!
for i in $(seq 1 90); do sleep 2; curl -s http://127.0.0.1:8105/health | grep -q ok && break; done
python tools/load_serve.py --url http://127.0.0.1:8105 --images $HOME/.cache/vtk/demo_classification/val --requests 2000 --concurrency 8 32 32 --server_pid $pid
kill $pid; wait $pid 2>/dev/null
