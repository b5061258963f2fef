#!/bin/sh
# run.sh: runs every test program given (or prints skip:NAME:REASON entries as skips), prints their output, then one total line
# "N passed, N failed" from the programs' own last lines. A program that crashes or prints
# no summary, or exits non-zero with none failed, counts as one failure. Exit status 1 if anything failed.
# OpenMP threads sleep at barriers instead of spinning: the tests run thousands of tiny parallel
# regions, and spinning threads stall badly when another process holds a core.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
passed=0
failed=0
for prog in "$@"; do
    case "$prog" in
    skip:*) # skip:NAME:REASON, for programs this machine cannot build
        name=$(echo "$prog" | cut -d: -f2)
        reason=$(echo "$prog" | cut -d: -f3- | tr '-' ' ')
        echo "skip $name: $reason"
        continue ;;
    esac
    echo "== $prog"
    out=$(mktemp)
    "$prog" > "$out" 2>&1
    status=$?
    cat "$out"
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [ -z "$summary" ]; then
        echo "FAIL $prog: no summary line (crashed?)"
        failed=$((failed + 1))
        continue
    fi
    p=$(echo "$summary" | cut -d' ' -f1)
    f=$(echo "$summary" | cut -d' ' -f3)
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $prog: exit status $status with no failed check"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "== all tests"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
