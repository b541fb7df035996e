#!/usr/bin/env bash
# Builds kchain's own code with AddressSanitizer and UndefinedBehaviorSanitizer (host backend,
# no CUDA, no benchmarks) into build-asan/ and runs the runtime, gateway and sample suites
# there. Any report fails the run. CI runs it after scripts/test.sh (.ci/run).
#
#   scripts/sanitize.sh [extra ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KCHAIN_ASAN_BUILD:-build-asan}
jobs=${KCHAIN_JOBS:-$(nproc)}
scripts/setup-deps.sh
generator=()
[ -f "$build/CMakeCache.txt" ] || { command -v ninja >/dev/null && generator=(-G Ninja); }
echo "== configuring $build (AddressSanitizer + UndefinedBehaviorSanitizer, host backend)"
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKCHAIN_CUDA=OFF \
  -DKCHAIN_BUILD_BENCH=OFF -DKCHAIN_SANITIZE=address,undefined >/dev/null
echo "== building with $jobs jobs"
cmake --build "$build" -j "$jobs"
# Workers crash on purpose in the isolation tests: let those signals kill them as they would
# without ASan (its handlers would turn a SIGSEGV into exit status 1). Leak checking needs
# ptrace, which the workers' seccomp filter refuses: it runs in the gateway and test processes.
export ASAN_OPTIONS="handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0:detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
echo "== running the runtime, gateway and sample suites under the sanitizers"
ctest --test-dir "$build" -L "runtime|gateway|samples" -LE gpu --output-on-failure -j "$jobs" \
  --timeout 600 "$@"
