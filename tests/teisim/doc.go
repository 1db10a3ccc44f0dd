// Package teisim simulates the HTTP API of Hugging Face Text Embeddings
// Inference (TEI) 1.9.3 for tests and benchmarks. It is not TEI and runs no
// model: vectors and scores are deterministic functions of the model id and
// the tokens, so tests can assert on them.
//
// It follows TEI 1.9.3's source (huggingface/text-embeddings-inference at
// tag v1.9.3: router/src/http/server.rs and types.rs, core/src/infer.rs,
// queue.rs and tokenization.rs, backends/src/lib.rs), and where TEI's own
// OpenAPI spec (testdata/tei-openapi-1.9.3.json) disagrees with that source,
// the source wins. It is meant to be as strict as TEI, so that no client
// test passes because the simulator forgives what TEI would not:
//
//   - Bodies are decoded as serde does (serde.go): keys are case-sensitive,
//     unknown keys are ignored, duplicate keys, null for a plain bool
//     (normalize, raw_scores, return_text, add_special_tokens,
//     skip_special_tokens) or for an enum (truncation_direction,
//     encoding_format), invalid UTF-8 and lone surrogates are refused, with
//     axum's plain-text 400 or 422 and serde's message.
//   - Admission is TEI's semaphore of per-input permits taken without
//     waiting: /embed and the other embedding routes take all of a
//     request's permits or answer 429 at once; /rerank and batched /predict
//     take one per input, so the inputs that got one are run (and counted
//     in te_predict_count) before the request answers 429. "inputs": [] is
//     one empty input: it takes a permit before it is refused.
//   - Inputs of one request are independent, as TEI's per-input futures:
//     a failing input does not spare the others their tokenization and
//     backend time, and the answer is the first failure by input order.
//   - The backend batches the inputs of concurrent requests by token budget
//     (--max-batch-tokens, --max-batch-requests), so latency responds to
//     load; --sim-backend candle or ort adds the CPU backends' cap of 4 or 8
//     entries and their padding (every entry costs the longest entry's
//     tokens). /health waits for a free backend worker, behind the batch in
//     progress, as TEI's health check waits on its backend thread.
//   - Outputs are serialised as serde_json writes f32 (NaN as null), and
//     rerank ties are ordered as TEI's sort-then-reverse orders them.
//   - Error statuses, error_type values and messages are TEI's, the
//     framework's errors plain text, the failure counters
//     (te_request_failure{err}) counted where TEI counts them.
//
// Fault knobs (Fault, --sim-error-*, --sim-nan-marker, --sim-stall,
// --sim-unhealthy) let tests drive failure paths, among them a backend
// error that fails every request in its batch and a model that outputs NaN.
//
// The simulator says what it is, so no tool mistakes it for TEI: /info
// carries a top-level "simulator": "teisim" (TEI's own fields keep TEI's
// names, order and values; docker_label is "teisim" too), the binary logs
// that it is a simulator when it starts, and --version says so.
package teisim
