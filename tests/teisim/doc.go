// Package teisim simulates the HTTP API of Hugging Face Text Embeddings
// Inference (TEI) 1.9.3 for tests and benchmarks. It is not TEI and runs no
// model: vectors and scores are deterministic functions of the model id and
// the tokens, so tests can assert on them.
//
// What it keeps faithful, because tei-sidecar's behaviour depends on it:
// TEI's router flags and environment variables with their defaults, /info,
// the routes and their JSON shapes, the exact error statuses, types and
// messages (including the plain-text framework errors), the per-input permit
// semaphore that answers 429 at once, the client batch limit, truncation,
// and a backend that batches the inputs of concurrent requests by token
// budget so latency responds to load. Fault knobs (error rate, stall,
// unhealthy) let tests drive failure paths.
//
// /work/shared/tei/README.md is the authority for TEI's behaviour; where TEI's
// own OpenAPI spec disagrees, the simulator follows the README.
package teisim
