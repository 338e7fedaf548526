#!/usr/bin/env bash
# Fuzzes every parser the outside world reaches, each for a bounded time,
# with cargo fuzz (libFuzzer) on the stable toolchain. Fails on a crash, a
# panic or a timeout; the input that caused it is left in
# tests/fuzz/artifacts/<target>/ (reproduce with
# `cargo fuzz run -s none -a <target> <file>` from tests/fuzz).
#
#   FUZZ_SECONDS=60      seconds per target (default 60)
#   FUZZ_TARGETS="a b"   which targets (default: all of `cargo fuzz list`)
#
# Stable rustc: `-s none` builds without a sanitizer (AddressSanitizer needs
# nightly's -Zsanitizer; the code fuzzed is safe Rust) but keeps libFuzzer's
# coverage instrumentation; `-a` turns on debug assertions and overflow
# checks. No RUSTC_BOOTSTRAP is needed.
set -euo pipefail
cd "$(dirname "$0")/../../tests/fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list)}"
# New inputs the fuzzer finds go to a scratch corpus; the committed seeds
# in corpus/<target> are only read.
WORK="${FUZZ_WORK:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz-corpus}"

cargo fuzz build -s none -a --release

failed=()
for target in $TARGETS; do
    mkdir -p "$WORK/$target" "artifacts/$target"
    echo "== fuzzing $target for ${SECONDS_PER_TARGET}s"
    # -timeout: one input running over 10 s is a failure (the shape check
    # must stay linear); -rss_limit_mb bounds memory per input.
    log="$WORK/$target.log"
    status=0
    cargo fuzz run -s none -a --release "$target" "$WORK/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
    if [ "$status" != 0 ]; then
        tail -n 40 "$log"
        echo "!! $target failed (exit $status): see $log and tests/fuzz/artifacts/$target/"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: no crash in $(echo $TARGETS | wc -w) targets, ${SECONDS_PER_TARGET}s each"
