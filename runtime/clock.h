// The one clock helper for timings: kchain measures with the steady clock and reports
// durations as microseconds in a double (cheap to take on the hot path, no allocation).
#ifndef KCHAIN_RUNTIME_CLOCK_H_
#define KCHAIN_RUNTIME_CLOCK_H_

#include <chrono>

namespace kchain {

// Microseconds from `start` until now, on the steady clock.
inline double MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace kchain

#endif  // KCHAIN_RUNTIME_CLOCK_H_
