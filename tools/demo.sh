#!/bin/sh
# make demo: the whole story on built-in data, as a Colab user lives it. Generates a synthetic VOC dataset, trains
# the small preset with checkpoints, kills the trainer with SIGKILL part-way (a vanished machine), runs the same
# command again (it resumes), checks that the result is bit for bit the one of a run that was never interrupted,
# evaluates VOC mAP on the test split and draws detections. Prints where every artefact is.
#
# The uninterrupted reference run trains beside the interrupted one, each on one core, so that the comparison
# costs no extra wall time on a 2-core machine. DEMO_ITERS overrides the length of training.
set -u
BUILD=${BUILD:-build}
DIR=$BUILD/demo
ITERS=${DEMO_ITERS:-3600}
SAVE_EVERY=$((ITERS / 8 > 0 ? ITERS / 8 : 1))
KILL_AT=$((ITERS * 2 / 5 / SAVE_EVERY * SAVE_EVERY)) # the checkpoint after which the kill comes
[ "$KILL_AT" -ge "$SAVE_EVERY" ] || KILL_AT=$SAVE_EVERY
start=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - start )) s"; }

# Training options: the small preset at 224 px short side (the synthetic images are 240-352 px; 320 costs 1.7x the
# time per step), 128 RoIs per image with fc6/fc7 512 wide (the head at half the cost of 1024 for the same mAP),
# learning rate 0.04. Evaluation and pictures at 352 px, the images' own size, where small objects survive
# (docs/training.md has the measurements behind each choice).
set -- --voc-root "$DIR/data" --classes "$DIR/data/VOC2007/classes.txt" --iters "$ITERS" --save-every "$SAVE_EVERY" \
    --save-minutes 0 --keep 2 --print-every "$SAVE_EVERY" --threads 1 --roi-batch 128 --fc 512 --short-side 224 \
    --max-side 384 --lr 0.04
TEST_SCALE="--short-side 352 --max-side 600"

say "1/6 synthetic VOC dataset -> $DIR/data"
if [ ! -f "$DIR/data/.complete" ] || [ "$BUILD/tools/synth_voc" -nt "$DIR/data/.complete" ]; then
    rm -rf "$DIR/data" && mkdir -p "$DIR/data" || die "cannot create $DIR/data"
    "$BUILD/tools/synth_voc" --out "$DIR/data" --seed 1 || die "synth_voc failed"
    touch "$DIR/data/.complete"
else
    echo "(already generated)"
fi

say "2/6 training $ITERS iterations, killed with SIGKILL after iteration $KILL_AT; a reference run trains uninterrupted beside it"
rm -rf "$DIR/ckpt" "$DIR/reference" && mkdir -p "$DIR/ckpt" "$DIR/reference" || die "cannot create checkpoint folders"
"$BUILD/examples/train_voc" "$@" --ckpt-dir "$DIR/reference" >"$DIR/reference.log" 2>&1 &
reference=$!
"$BUILD/examples/train_voc" "$@" --ckpt-dir "$DIR/ckpt" &
trainer=$!
kill_file="$DIR/ckpt/frcnn-$(printf %012d "$KILL_AT").ckpt"
while [ ! -f "$kill_file" ]; do
    kill -0 "$trainer" 2>/dev/null || die "the trainer stopped before iteration $KILL_AT"
    sleep 1
done
sleep 7 # some steps past the checkpoint, which the resumed run must redo identically
kill -9 "$trainer"
wait "$trainer" 2>/dev/null
echo "demo: trainer killed with SIGKILL ($(elapsed) in); the newest checkpoint is $(ls "$DIR/ckpt" | grep ckpt$ | tail -n 1)"

say "3/6 the same command again: it resumes"
"$BUILD/examples/train_voc" "$@" --ckpt-dir "$DIR/ckpt" || die "the resumed run failed"
wait "$reference" || die "the reference run failed (see $DIR/reference.log)"

say "4/6 resumed vs uninterrupted"
final=frcnn-$(printf %012d "$ITERS").ckpt
if cmp -s "$DIR/ckpt/$final" "$DIR/reference/$final"; then
    identical="identical"
    echo "demo: $final of the killed-and-resumed run and of the uninterrupted run are byte-for-byte identical"
else
    identical="DIFFERENT"
    echo "demo: ERROR: $final differs between the killed-and-resumed run and the uninterrupted run" >&2
fi

say "5/6 VOC2007 mAP on the test split"
rm -rf "$DIR/results" && mkdir -p "$DIR/results" || die "cannot create $DIR/results"
# shellcheck disable=SC2086
"$BUILD/examples/eval_voc" --voc-root "$DIR/data" --ckpt "$DIR/ckpt/$final" --split test --out "$DIR/results" \
    --threads 2 $TEST_SCALE >"$DIR/eval.txt" || die "eval_voc failed"
cat "$DIR/eval.txt"
map=$(awk '/^mAP07/ {print $2}' "$DIR/eval.txt")

say "6/6 detections drawn"
mkdir -p "$DIR/detections"
images=$(sed -n '1,4p' "$DIR/data/VOC2007/ImageSets/Main/test.txt" | sed "s|^|$DIR/data/VOC2007/JPEGImages/|; s|$|.jpg|")
# shellcheck disable=SC2086
"$BUILD/examples/detect" --ckpt "$DIR/ckpt/$final" --out "$DIR/detections" --threads 2 $TEST_SCALE $images \
    >"$DIR/detections.txt" || die "detect failed"

say "done in $(elapsed)"
cat <<EOF
  dataset           $DIR/data/VOC2007 (synthetic, 6 shape classes)
  checkpoints       $DIR/ckpt (log: $DIR/ckpt/frcnn-log.jsonl)
  reference run     $DIR/reference ($identical to the resumed run)
  VOC07 mAP (test)  $map   (target 0.80); per class: $DIR/eval.txt, result files: $DIR/results
  pictures          $DIR/detections/*.det.jpg (detections listed in $DIR/detections.txt)
EOF
[ "$identical" = identical ] || exit 1
