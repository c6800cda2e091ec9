#!/bin/sh
# Runs each test program given as an argument, then prints one total line. A cmocka binary counts its tests;
# any other program (an example that checks its own result) counts as one test, passed when it exits 0.
# Exits non-zero if any test failed or any program crashed.

# The sum of the counts in cmocka's "[  PASSED  ] N test(s)" (or FAILED) lines of $out, empty when there are none.
# cmocka writes the verdict to stderr and the rest to stdout, so it may share a line with other output; a program
# with several groups prints one verdict per group.
verdicts() {
    printf '%s\n' "$out" | grep -o "\[  $1  \] [0-9]* test" | tr -dc '0-9\n' | awk '{s += $1} END {if (NR) print s}'
}

passed=0
failed=0
status=0
for bin in "$@"; do
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(verdicts PASSED)
    f=$(verdicts FAILED)
    if [ -z "$p$f" ]; then
        if [ "$rc" -eq 0 ]; then p=1; else f=1; fi
        echo "[ $( [ "$rc" -eq 0 ] && echo PASSED || echo FAILED ) ] $bin (exit status $rc)"
    fi
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ]; then
        status=1
        [ -z "$f" ] && { echo "$bin exited with status $rc"; failed=$((failed + 1)); }
    fi
done
echo "tests: $passed passed, $failed failed"
exit $status
