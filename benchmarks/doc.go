// Package benchmarks is the load generator behind `pancap bench`: it sends
// StreamCaption requests to a running server (Run) with a fixed number of
// requests at once, Poisson or Gamma arrivals, a closed loop at a fixed
// concurrency, or a sweep; records what the client saw of every request
// (Timeline); and reduces that to vLLM-defined metrics (TTFT, TPOT, ITL,
// end-to-end latency, throughput, goodput) plus the chain's own (per-stage
// TTFT/TPOT/tokens, chain latency, images per second, prefix-cache hits,
// vision-encoder runs) in a RunResult. A Result is the JSON file of one
// invocation (schema in README.md); WriteTable prints it, WritePlots draws
// it, and Compare sets two of them side by side.
package benchmarks
