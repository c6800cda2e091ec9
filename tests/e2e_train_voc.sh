#!/bin/sh
# End-to-end test of examples/train_voc on a tiny synthetic VOC set: a run killed with SIGKILL (twice, at moments
# that vary from run to run) and started again with the same command must end with the same checkpoint, byte for
# byte, and the same per-iteration log as an uninterrupted run. Also: a finished run rerun says so, --no-resume
# refuses to start over checkpoints, a missing checkpoint folder is refused, local checkpoints under Colab are
# warned about, SIGTERM saves and exits 0, a corrupt image stops the run (or is skipped when asked), --init-weights
# starts from a file and resumes without it, a run keeps its RoI op when resumed, and eval_voc and detect work on the result. Exit status 0 = passed.
set -u
BUILD=${BUILD:-build}
train=$BUILD/examples/train_voc
tmp=$(mktemp -d /tmp/frcnn-e2e-XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "e2e_train_voc: FAILED: $*"
    for f in "$tmp"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }; done
    exit 1
}

"$BUILD/tools/synth_voc" --out "$tmp" --seed 3 --train 12 --test 2 --min-side 96 --max-side 128 >/dev/null ||
    fail "synth_voc"
mkdir "$tmp/straight" "$tmp/killed"
set -- --voc-root "$tmp" --classes "$tmp/VOC2007/classes.txt" --short-side 96 --max-side 128 --iters 32 \
    --save-every 8 --keep 100 --print-every 10 --threads 2

"$train" "$@" --ckpt-dir "$tmp/straight" >"$tmp/straight.out" 2>&1 || fail "uninterrupted run"

# The interrupted run: SIGKILL as soon as the checkpoint of iteration $1 appears (the trainer is then somewhere in
# the following steps or saves), then the same command again.
kill_after_checkpoint() {
    "$train" "$@" --ckpt-dir "$tmp/killed" >>"$tmp/killed.out" 2>&1 &
    pid=$!
    i=0
    while [ ! -f "$tmp/killed/frcnn-$(printf %012d "$ITER").ckpt" ]; do
        kill -0 "$pid" 2>/dev/null || fail "trainer ended before iteration $ITER"
        i=$((i + 1))
        [ $i -gt 1200 ] && { kill -9 "$pid"; fail "no checkpoint of iteration $ITER after 60 s"; }
        sleep 0.05
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
}
ITER=8 kill_after_checkpoint "$@"
ITER=24 kill_after_checkpoint "$@"
"$train" "$@" --ckpt-dir "$tmp/killed" >>"$tmp/killed.out" 2>&1 || fail "resumed run"
[ "$(grep -c '^resumed from' "$tmp/killed.out")" -eq 2 ] || fail "the reruns did not both resume"

last=frcnn-000000000032.ckpt
cmp "$tmp/straight/$last" "$tmp/killed/$last" || fail "final checkpoints differ"
for f in "$tmp"/straight/frcnn-*.ckpt; do
    cmp -s "$f" "$tmp/killed/$(basename "$f")" || fail "$(basename "$f") differs or is missing"
done
# Logs: every iteration once, identical but for the timing fields.
strip() { sed 's/,"seconds".*//' "$1"; }
strip "$tmp/straight/frcnn-log.jsonl" >"$tmp/a.log"
strip "$tmp/killed/frcnn-log.jsonl" >"$tmp/b.log"
[ "$(wc -l <"$tmp/a.log")" -eq 32 ] || fail "the log has $(wc -l <"$tmp/a.log") lines, not 32"
cmp "$tmp/a.log" "$tmp/b.log" || fail "logs differ"

"$train" "$@" --ckpt-dir "$tmp/killed" >"$tmp/again.out" 2>&1 || fail "rerun of a finished run"
grep -q "already finished" "$tmp/again.out" || fail "a finished run rerun did not say so"
COLAB_RELEASE_TAG=test "$train" "$@" --ckpt-dir "$tmp/killed" >"$tmp/colab.out" 2>&1 || fail "run under Colab"
grep -q "WARNING: checkpoints go to .*local disk" "$tmp/colab.out" || fail "no warning for local checkpoints under Colab"
grep -q "WARNING" "$tmp/again.out" && fail "a warning for local checkpoints outside Colab"
"$train" "$@" --ckpt-dir "$tmp/killed" --no-resume >"$tmp/noresume.out" 2>&1 && fail "--no-resume over checkpoints"
grep -q "holds checkpoints" "$tmp/noresume.out" || fail "--no-resume message"
"$train" "$@" --ckpt-dir "$tmp/missing/dir" >"$tmp/missing.out" 2>&1 && fail "missing checkpoint folder accepted"
[ ! -e "$tmp/missing" ] || fail "train_voc created a missing checkpoint folder"

# SIGTERM (Colab's "interrupt", a shutdown): the step finishes, a checkpoint is saved, exit status 0.
mkdir "$tmp/term"
"$train" "$@" --ckpt-dir "$tmp/term" >"$tmp/term.out" 2>&1 &
pid=$!
i=0
while [ ! -f "$tmp/term/frcnn-000000000008.ckpt" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM "$pid"
wait "$pid" || fail "SIGTERM: exit status $?"
grep -q "saving and stopping" "$tmp/term.out" || fail "SIGTERM did not save"
stopped=$(sed -n 's/.* received at iteration \([0-9]*\);.*/\1/p' "$tmp/term.out")
[ -f "$tmp/term/frcnn-$(printf %012d "$stopped").ckpt" ] || fail "no checkpoint of iteration $stopped after SIGTERM"

# An unreadable image stops the run naming it, unless --skip-bad-images.
cp -r "$tmp/VOC2007" "$tmp/bad" && mkdir "$tmp/badckpt" && echo "not a jpeg" >"$tmp/bad/JPEGImages/000001.jpg"
"$train" "$@" --voc-root "$tmp/bad" --ckpt-dir "$tmp/badckpt" >"$tmp/bad.out" 2>&1 && fail "a corrupt image was accepted"
grep -q "000001.jpg" "$tmp/bad.out" || fail "the corrupt image is not named"
"$train" "$@" --voc-root "$tmp/bad" --ckpt-dir "$tmp/badckpt" --skip-bad-images >"$tmp/skip.out" 2>&1 ||
    fail "--skip-bad-images"
grep -q "warning: skipping: .*000001.jpg" "$tmp/skip.out" || fail "--skip-bad-images did not warn"

# --init-weights: a new run starts from a file's weights with the file's pixel normalisation, and once it has a
# checkpoint it resumes even when the initial weights file is gone (a local disk wiped by Colab).
mkdir "$tmp/init" && cp "$tmp/straight/frcnn-000000000016.ckpt" "$tmp/weights.ckpt"
"$train" "$@" --ckpt-dir "$tmp/init" --iters 4 --save-every 2 --init-weights "$tmp/weights.ckpt" \
    >"$tmp/init.out" 2>&1 || fail "--init-weights"
grep -q "from $tmp/weights.ckpt: pixel means" "$tmp/init.out" || fail "--init-weights did not take the file's conventions"
grep -q "initial weights: .* [1-9][0-9]* tensors loaded, 0 missing" "$tmp/init.out" || fail "--init-weights loaded nothing"
rm "$tmp/weights.ckpt" "$tmp/init/frcnn-000000000004.ckpt"
"$train" "$@" --ckpt-dir "$tmp/init" --iters 4 --save-every 2 --init-weights "$tmp/weights.ckpt" \
    >"$tmp/init2.out" 2>&1 || fail "resume after the initial weights file was removed"
grep -q "resumed from .*frcnn-000000000002.ckpt" "$tmp/init2.out" || fail "--init-weights run did not resume"

# A run trained with RoI pooling resumes with the same command whatever the preset's default op; an explicit
# different --roi-op is refused as a configuration change.
mkdir "$tmp/pool"
"$train" "$@" --ckpt-dir "$tmp/pool" --iters 4 --save-every 2 --roi-op pool >"$tmp/pool.out" 2>&1 || fail "--roi-op pool"
grep -q "small preset (RoI pool)" "$tmp/pool.out" || fail "--roi-op pool was not used"
rm "$tmp/pool/frcnn-000000000004.ckpt"
"$train" "$@" --ckpt-dir "$tmp/pool" --iters 4 --save-every 2 >"$tmp/pool2.out" 2>&1 || fail "resume without --roi-op"
grep -q "small preset (RoI pool)" "$tmp/pool2.out" || fail "the resumed run did not keep RoI pooling"
rm "$tmp/pool/frcnn-000000000004.ckpt"
"$train" "$@" --ckpt-dir "$tmp/pool" --iters 4 --save-every 2 --roi-op align >"$tmp/pool3.out" 2>&1 &&
    fail "resumed a RoI pooling run with --roi-op align"
grep -q "roi_op" "$tmp/pool3.out" || fail "the refusal does not name roi_op"

# The trained checkpoint evaluates and draws.
"$BUILD/examples/eval_voc" --voc-root "$tmp" --ckpt "$tmp/killed/$last" --split test --out "$tmp" --quiet \
    >"$tmp/eval.out" 2>&1 || fail "eval_voc"
grep -q "^mAP07 [0-9.]* mAP10 [0-9.]*$" "$tmp/eval.out" || fail "eval_voc output"
[ "$(ls "$tmp"/comp4_det_test_*.txt | wc -l)" -eq 6 ] || fail "eval_voc result files"
"$BUILD/examples/eval_voc" --voc-root "$tmp" --ckpt "$tmp/killed/$last" --split test --out "$tmp" --limit 2 \
    --short-side 144 --max-side 192 >"$tmp/eval144.out" 2>&1 || fail "eval_voc at another test scale"
grep -q "at scale 144/192" "$tmp/eval144.out" || fail "eval_voc ignored --short-side/--max-side"
grep -q "^mAP07 [0-9.]* mAP10 [0-9.]*$" "$tmp/eval144.out" || fail "eval_voc output at another test scale"
"$BUILD/examples/detect" --ckpt "$tmp/killed/$last" --out "$tmp" --threshold 0 --quiet \
    "$tmp/VOC2007/JPEGImages/000013.jpg" >"$tmp/detect.out" 2>&1 || fail "detect"
[ -s "$tmp/000013.det.jpg" ] || fail "detect wrote no picture"
"$BUILD/examples/detect" --ckpt "$tmp/killed/$last" --out "$tmp" --threshold 0 --quiet --short-side 144 \
    --max-side 192 "$tmp/VOC2007/JPEGImages/000013.jpg" >"$tmp/detect144.out" 2>&1 || fail "detect at another scale"

echo "e2e_train_voc: passed (2 SIGKILLs, 4 checkpoints and the log identical to an uninterrupted run)"
