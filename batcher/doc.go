// Package batcher is the continuous batcher: it admits PancapChain and
// free-form generation requests, runs the four stages of many images together
// in one step loop over an engine.Engine, shares each image's prefix KV blocks
// across its stages, and streams every request's events.
//
// # Life of a request
//
// SubmitChain and SubmitGenerate validate the request and take a place in a
// bounded FCFS queue (a full queue answers ErrQueueFull at once, before any
// decoding); then, in the caller's goroutine, the image is decoded and
// preprocessed under a byte budget shared by all requests
// (Config.DecodeBudget, each image's bound read from its header by
// Engine.ImageCost), so a flood of large images waits instead of taking
// memory, and a cancelled call stops decoding. A request whose largest stage
// (prompt, longest possible hand-off list, token limit) cannot fit the KV
// pool is refused at submission. The step loop admits the head of the queue
// when the blocks it needs now fit beside what the running sequences need to
// go on: its first prompt's blocks, less those running sequences share with
// it through the prefix cache, plus one block of headroom for it and for
// each running sequence. Sequences then grow block by block; when the pool
// runs short, the newest request gives way (see One step). Each stage of a
// request is a sequence that goes Encoding (vision encoder, batched across
// images) → Prefill (chunked) → Decode → Done, or is Cancelled when its
// context ends (checked every step).
//
// # One step
//
// The step loop is the only caller of Engine.EncodeImages and Engine.Forward.
// A step drops cancelled work (freeing its blocks), admits, queues the
// encode of up to MaxEncodeBatch images, then builds one Forward batch under
// MaxBatchTokens: one token for every decoding sequence first, then prefill
// chunks, stages of started chains before the first stage of new ones, and
// admission order within each. An image's rows join a batch only once its
// features are ready (engine.Features: a GPU engine encodes on a stream of
// its own), so the other sequences decode while it encodes; a step with
// nothing else to run waits for them. The features stay in the engine: the
// loop holds one reference per request (and per feature-cache entry) for as
// long as a stage may feed the rows, preemption's recompute included, and
// releases the engine's handle with the last.
//
// When a sequence needs a block the pool lacks, the request admitted last
// after it that holds blocks and is not in the step's batch is preempted:
// its blocks are freed and it is recomputed later from its prompt and the
// tokens it already generated, so no request fails for memory. A request is
// never preempted for a newer one, and after a step in which a sequence
// lacked blocks the next batch is built in admission order, so the oldest
// request takes what it needs from newer ones and never starves; admission
// waits while running sequences lack blocks, so preempted ones come back
// before new ones start; and a request alone always fits, so the loop cannot
// livelock. Speculative drafts never preempt: without free blocks a sequence
// decodes plainly.
//
// The engine picks every token: greedy sequences ask for their argmax
// (engine.Chunk.Greedy), sampling ones for a draw (engine.Chunk.Sample) at
// the next number of their sampler's seeded stream (sample.Sampler.Uniform),
// which the engine picks at by sample.Picker's rule; on a GPU the pick runs
// there and 4 bytes a sequence come back instead of a row of logits.
// A panic in the loop fails the admitted requests with ErrInternal, empties
// the KV pool and restarts the loop; queued requests are kept.
//
// # Reuse
//
// With Config.ChainReuse, the KV cache (batcher/kvcache) keys full blocks by a
// hash chain over the image bytes and token ids: stage k+1 finds the blocks
// of the system text, "USER: ", the image and the prompt words the stages
// share already computed by stage k, and a later request with the same image
// bytes finds them too. Requests for one image that arrive together do not
// each compute the prefix: a request about to prefill blocks that another
// is computing waits for them and then takes them from the cache (its
// StageFinished usage counts them as cached). Encoder outputs are kept for the chain's life and in
// a small cache for repeated images, so each image is encoded once. Without
// ChainReuse (the baseline), every stage re-encodes its image and prefills
// its whole prompt, as the authors' script does; outputs are the same.
//
// # Speculative decoding
//
// With Config.Speculative, a greedy sequence drafts its next tokens from its
// own context (prompt lookup: what followed the last occurrence of its
// latest tokens, following the prompt's lists in order) and verifies them
// as extra rows of its decode chunk (engine.Chunk.AllLogits). The longest
// prefix of the draft that greedy decoding reproduces is accepted, with the
// token after it, and the KV blocks reserved for the rest are released
// (kvcache.Cache.Trim). As the engine's rows are batch invariant, every
// emitted token is the argmax of the logits a one-row step would give:
// outputs and streamed events are the same as without speculation. Drafts
// take only the token budget the decode tokens leave, only the tokens whose
// measured acceptance rate beats their row's cost at the step's batch size,
// and none in steps of more than Config.SpeculativeMaxBatch decoding
// sequences. Sampling sequences never speculate.
//
// # Streams
//
// Events go through a per-request unbounded buffer drained by a goroutine,
// so a slow reader never stalls the step loop. Read the channel until it is
// closed (after EventDone), or cancel the request's context: then pending
// events are dropped and EventDone waits briefly for a reader. Stage text is
// streamed as it is detokenised; the concatenated deltas of a stage equal its
// final text (see detok for the whitespace and UTF-8 rules).
package batcher
