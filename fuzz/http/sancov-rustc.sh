#!/bin/bash
# RUSTC_WRAPPER for fuzz/http/run.sh: instruments skyshard's own crates for libFuzzer's coverage guidance (stable rustc
# flags); the dependencies compile as usual.
rustc="$1"; shift
args=" $* "
case "$args" in
  *" --crate-name tap "*|*" --crate-name votable "*|*" --crate-name adql "*|*" --crate-name czar "*|*" --crate-name protocol "*|*" --crate-name exec "*|*" --crate-name partitioner "*|*" --crate-name worker "*)
    exec "$rustc" "$@" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares ;;
esac
exec "$rustc" "$@"
