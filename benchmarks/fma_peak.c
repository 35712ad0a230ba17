// The cores' float32 FMA peak, for reading the benchmark's "% of ceiling" (which divides
// by a 1024^3 torch.mm instead): every thread runs independent AVX-512 (or AVX2) FMAs on
// registers only, all threads at once. Build and run:
//   gcc -O2 -march=native -fopenmp benchmarks/fma_peak.c -o /tmp/fma_peak
//   OMP_NUM_THREADS=2 /tmp/fma_peak
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#define FIRST(v) _mm512_cvtss_f32(v)
#else
typedef __m256 vec;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
#define FIRST(v) _mm256_cvtss_f32(v)
#endif

// 24 independent accumulators: more than FMA latency x units, so the units never wait.
enum { kChains = 24 };
static const long kIterations = 400L * 1000 * 1000 / kChains;

int main(void) {
  double total = 0;
#pragma omp parallel reduction(+ : total)
  {
    vec acc[kChains];
    const vec x = SET1(1.0000001f), y = SET1(0.9999999f);
    for (int i = 0; i < kChains; ++i) acc[i] = SET1((float)i);
    double best = 0;
    for (int round = 0; round < 3; ++round) {  // the best of three: the first warms up
#pragma omp barrier
      const double start = omp_get_wtime();
      for (long it = 0; it < kIterations; ++it) {
#pragma GCC unroll 24  // keeps acc in registers
        for (int i = 0; i < kChains; ++i) acc[i] = FMA(acc[i], x, y);
      }
      const double rate = 2.0 * LANES * kChains * kIterations / (omp_get_wtime() - start) / 1e9;
      if (rate > best) best = rate;
    }
    float sink = 0;  // keeps the loop's results alive
    for (int i = 0; i < kChains; ++i) sink += FIRST(acc[i]);
#pragma omp critical
    printf("thread %d: %.1f GFLOP/s (%g)\n", omp_get_thread_num(), best, sink);
    total += best;
  }
  printf("all threads: %.1f GFLOP/s float32 FMA peak\n", total);
  return 0;
}
