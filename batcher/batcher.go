package batcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/pancap-serve/pancap/batcher/kvcache"
	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
	"github.com/pancap-serve/pancap/tokenizer"
)

// Batcher is the continuous batcher. Submit methods and Ready, Spec and
// Shutdown are safe for concurrent use; one goroutine, the step loop, owns
// the engine's device work and all scheduling state.
type Batcher struct {
	eng   engine.Engine
	spec  engine.Spec
	tok   engine.Tokenizer
	cfg   Config
	kv    *kvcache.Cache
	m     *metrics
	base  [4]int  // prompt ids of each stage's template with an empty hand-off
	first []int32 // those ids of stage 1, the first prompt of every chain

	mu       sync.Mutex
	waiting  []*request // FCFS; with decoding, at most cfg.MaxQueue
	decoding int        // requests holding a queue place while they decode their image
	closing  bool
	started  bool
	lostErr  error               // set when the engine lost its device: the batcher has stopped for good
	budget   *semaphore.Weighted // cfg.DecodeBudget bytes of image decoding

	active   atomic.Int64 // requests accepted and not yet done
	ready    atomic.Bool
	wake     chan struct{} // capacity 1: "there may be work"
	quit     chan struct{} // closed by Shutdown: cancel the rest and exit
	quitOnce sync.Once
	done     chan struct{} // closed when the step loop exits
	fatal    chan struct{} // closed when the engine lost its device

	// Step loop state.
	running []*request // admitted, in admission order
	order   uint64
	lost    error // the engine's lost-device error, seen in this step
	starved bool  // a sequence lacked KV blocks in the last step
	feats   *featureCache
	// Speculative decoding's verification outcomes, by stage (chain.Stage;
	// 0 for generations) and draft class.
	specStats [5][specClasses]specStats
	specPast  [5]outputs // recent outputs of each stage, to draft from
}

// New returns a Batcher over eng. Call Start to run its step loop. The KV
// pool has the engine's Spec().KVBlocks blocks of KVBlockSize tokens.
func New(eng engine.Engine, cfg Config) *Batcher {
	cfg = cfg.withDefaults()
	spec := eng.Spec()
	b := &Batcher{
		eng:    eng,
		spec:   spec,
		tok:    eng.Tokenizer(),
		cfg:    cfg,
		kv:     kvcache.New(spec.KVBlocks, spec.KVBlockSize),
		m:      newMetrics(cfg.Metrics),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		fatal:  make(chan struct{}),
		feats:  newFeatureCache(cfg.FeatureCache),
		budget: semaphore.NewWeighted(cfg.DecodeBudget),
	}
	for i := range b.specStats {
		for j := range b.specStats[i] {
			b.specStats[i][j] = newSpecStats(cfg.SpeculativeTokens)
		}
	}
	for k, st := range chain.Stages {
		ids := tokenizer.EncodeImagePrompt(b.tok, chain.Template(chain.Prompt(st, "")), b.spec.ImageTokens)
		if k == 0 {
			b.first = ids
		}
		b.base[k] = len(ids)
	}
	return b
}

// Start runs the step loop. Requests submitted before Start wait in the
// queue.
func (b *Batcher) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closing {
		return
	}
	b.started = true
	go b.run()
}

// Ready reports whether the step loop is running and accepting work: false
// before Start, while the loop restarts after a panic, from Shutdown on, and
// once the engine lost its device (see Fatal).
func (b *Batcher) Ready() bool { return b.ready.Load() }

// Fatal returns a channel that is closed when the batcher stops for good
// because the engine lost its device (engine.ErrDeviceLost): every running
// and queued request has failed with Err, later ones are refused with it,
// and Ready is false. The process should exit then, so that its supervisor
// starts a fresh one.
func (b *Batcher) Fatal() <-chan struct{} { return b.fatal }

// Err returns the error that stopped the batcher for good (see Fatal), or
// nil. It wraps ErrNotServing and the engine's engine.ErrDeviceLost.
func (b *Batcher) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lostErr
}

// Spec returns the engine's model facts.
func (b *Batcher) Spec() engine.Spec { return b.spec }

// KVStats returns the KV-cache pool's counters (blocks free, used, cached;
// prefix-cache queries and hits in tokens).
func (b *Batcher) KVStats() kvcache.Stats { return b.kv.Stats() }

// SubmitChain queues a PancapChain request. Validation and image
// preprocessing run in the caller's goroutine; their errors wrap
// ErrInvalidRequest, ErrInvalidImage or ErrPromptTooLong. A full queue gives
// ErrQueueFull, and a shut-down or stopped (see Fatal) batcher
// ErrNotServing. The channel yields the request's events and is closed
// after EventDone; the caller reads it to the end or cancels ctx.
func (b *Batcher) SubmitChain(ctx context.Context, r ChainRequest) (<-chan Event, error) {
	req, err := b.newChainRequest(r)
	if err != nil {
		return nil, err
	}
	return b.enqueue(ctx, req)
}

// SubmitGenerate queues a free-form generation; see SubmitChain.
func (b *Batcher) SubmitGenerate(ctx context.Context, r GenerateRequest) (<-chan Event, error) {
	req, err := b.newGenerateRequest(r)
	if err != nil {
		return nil, err
	}
	return b.enqueue(ctx, req)
}

// enqueue admits req to the bounded queue. A request takes its place in the
// queue before it decodes its image, and decodes under the decode budget, so
// that neither a full queue nor a flood of large images costs decoding work
// or memory beyond the configuration.
func (b *Batcher) enqueue(ctx context.Context, req *request) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closing {
		defer b.mu.Unlock()
		return nil, b.refusal()
	}
	if n := len(b.waiting) + b.decoding; n >= b.cfg.MaxQueue {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %d requests waiting (queue length %d)", ErrQueueFull, n, b.cfg.MaxQueue)
	}
	b.decoding++
	b.mu.Unlock()
	err := b.decode(ctx, req)
	b.mu.Lock()
	b.decoding--
	switch {
	case err != nil:
		b.mu.Unlock()
		return nil, err
	case b.closing:
		defer b.mu.Unlock()
		return nil, b.refusal()
	}
	req.ctx, req.submitted = ctx, time.Now()
	req.out = newStream(ctx)
	req.out.push(Event{Kind: EventQueued, Position: len(b.waiting)})
	b.waiting = append(b.waiting, req)
	b.active.Add(1)
	b.m.waiting.Set(float64(len(b.waiting)))
	b.mu.Unlock()
	b.poke()
	return req.out.out, nil
}

// refusal is the error a closing batcher answers a new request with. b.mu
// is held.
func (b *Batcher) refusal() error {
	if b.lostErr != nil {
		return b.lostErr
	}
	return fmt.Errorf("%w: shutting down", ErrNotServing)
}

// decode preprocesses req's image, if it has one, holding its cost against
// the decode budget meanwhile; a cancelled ctx ends the wait or the decode.
func (b *Batcher) decode(ctx context.Context, req *request) error {
	if req.image == nil {
		return nil
	}
	cost, err := b.eng.ImageCost(req.image)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	if cost > b.cfg.DecodeBudget {
		return fmt.Errorf("%w: decoding it takes up to %d MiB, more than the server's whole decode budget of %d MiB",
			ErrInvalidImage, cost>>20, b.cfg.DecodeBudget>>20)
	}
	if err := b.budget.Acquire(ctx, cost); err != nil {
		return err
	}
	defer b.budget.Release(cost)
	img, err := b.eng.Preprocess(ctx, req.image)
	if cost >= collectAfterDecode {
		// The decode's buffers are garbage now. Collect them before the
		// budget is released, so that the budget bounds the memory decoding
		// takes and not only its live data (the collector would otherwise
		// let the heap grow to twice what was live at its last cycle).
		runtime.GC()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	req.img, req.image = &img, nil
	return nil
}

// collectAfterDecode is the decode cost from which a decode is followed by a
// garbage collection (a few milliseconds, against a decode of tens of
// milliseconds or more).
const collectAfterDecode = 16 << 20

// poke wakes the step loop.
func (b *Batcher) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Shutdown stops accepting requests, waits for the admitted and queued ones
// to finish until ctx is done, then cancels the rest with ErrNotServing and
// stops the step loop. It returns ctx's error when it had to cancel.
func (b *Batcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	started := b.started
	b.mu.Unlock()
	b.ready.Store(false)
	var err error
	if started {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for b.active.Load() > 0 && err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-tick.C:
			}
		}
	}
	b.quitOnce.Do(func() { close(b.quit) })
	if started {
		<-b.done
	} else {
		b.failWaiting(fmt.Errorf("%w: shut down before start", ErrNotServing))
	}
	return err
}

// run is the step loop's goroutine: it restarts the loop after a panic.
func (b *Batcher) run() {
	defer close(b.done)
	for !b.loop() {
	}
}

// loop steps until Shutdown or a lost device (see stopLost). It returns
// false after recovering any other panic, having failed the in-flight
// requests with ErrInternal.
func (b *Batcher) loop() (quit bool) {
	defer func() {
		if r := recover(); r != nil {
			if err, ok := r.(error); ok && errors.Is(err, engine.ErrDeviceLost) {
				b.stopLost(err)
				quit = true
				return
			}
			b.ready.Store(false)
			b.m.panics.Inc()
			b.cfg.Logger.Error("batcher: step loop panic; failing in-flight requests",
				"panic", r, "stack", string(debug.Stack()))
			b.failRunning(fmt.Errorf("%w: step loop panic: %v", ErrInternal, r))
			b.feats.clear()
			b.gauges()
			quit = false
		}
	}()
	if !b.isClosing() {
		b.ready.Store(true)
	}
	for {
		select {
		case <-b.quit:
			err := fmt.Errorf("%w: shut down", ErrNotServing)
			b.failRunning(err)
			b.failWaiting(err)
			b.feats.clear()
			b.gauges()
			return true
		default:
		}
		if len(b.running) == 0 && b.numWaiting() == 0 {
			select {
			case <-b.wake:
			case <-b.quit:
			}
			continue
		}
		b.step()
		if b.lost != nil {
			b.stopLost(b.lost)
			return true
		}
	}
}

// stopLost stops the batcher for good after the engine lost its device
// (cause): every running and queued request fails, and later ones are
// refused, with an error wrapping ErrNotServing and cause; Fatal is closed.
// The KV pool is emptied without touching the engine.
func (b *Batcher) stopLost(cause error) {
	err := fmt.Errorf("%w: the accelerator failed: %w; this server is restarting", ErrNotServing, cause)
	b.ready.Store(false)
	b.mu.Lock()
	b.closing, b.lostErr = true, err
	b.mu.Unlock()
	b.cfg.Logger.Error("batcher: the engine's device is lost; failing every request and stopping", "err", cause)
	b.failRunning(err)
	b.failWaiting(err)
	b.feats.clear()
	b.gauges()
	close(b.fatal)
}

// deviceLost reports whether err, from the engine, says its device is lost,
// and then records it for the loop to stop on after this step.
func (b *Batcher) deviceLost(err error) bool {
	if errors.Is(err, engine.ErrDeviceLost) {
		b.lost = err
		return true
	}
	return false
}

// isClosing reports whether Shutdown has begun.
func (b *Batcher) isClosing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closing
}

// numWaiting returns the queue length.
func (b *Batcher) numWaiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// step is one iteration: drop cancelled work, admit, encode, forward.
func (b *Batcher) step() {
	b.reap()
	b.admit()
	b.encode()
	if b.lost == nil {
		b.forward()
	}
	b.running = slices.DeleteFunc(b.running, func(r *request) bool { return r.done })
	b.gauges()
}

// gauges updates the running, waiting and KV usage gauges.
func (b *Batcher) gauges() {
	st := b.kv.Stats()
	b.m.running.Set(float64(len(b.running)))
	b.m.waiting.Set(float64(b.numWaiting()))
	b.m.kvUsage.Set(float64(st.Used) / float64(st.Blocks))
}

// reap fails every request whose context is done, freeing its blocks.
func (b *Batcher) reap() {
	for _, r := range b.running {
		if err := r.ctx.Err(); err != nil && !r.done {
			b.fail(r, fmt.Errorf("request %q: %w", r.id, err))
		}
	}
	b.mu.Lock()
	var gone []*request
	b.waiting = slices.DeleteFunc(b.waiting, func(r *request) bool {
		if r.ctx.Err() != nil {
			gone = append(gone, r)
			return true
		}
		return false
	})
	b.mu.Unlock()
	for _, r := range gone {
		b.fail(r, fmt.Errorf("request %q: %w", r.id, r.ctx.Err()))
	}
}

// admit moves queued requests to running, first come first served, while
// the blocks the head takes now (startNeed) fit in the pool beside those
// the running sequences need to go on (shortfall). Sequences then grow block
// by block, preempting the newest request when the pool runs short
// (reserve). With nothing running, the head is always admitted: its largest
// stage fits the pool (fitsPool), so a request alone always finishes.
func (b *Batcher) admit() {
	short := b.shortfall()
	for {
		// Only this goroutine removes queued requests: the head stays.
		b.mu.Lock()
		if len(b.waiting) == 0 {
			b.mu.Unlock()
			return
		}
		r := b.waiting[0]
		b.mu.Unlock()
		need := b.startNeed(r)
		if len(b.running) > 0 && short+need > b.kv.Available() {
			return
		}
		b.mu.Lock()
		b.waiting = b.waiting[1:]
		b.mu.Unlock()
		short += need
		r.admitted = time.Now()
		r.order = b.order
		b.order++
		b.running = append(b.running, r)
		b.m.queueTime.Observe(r.admitted.Sub(r.submitted).Seconds())
		b.startStage(r, r.firstStage())
	}
}

// shortfall is the KV blocks the running sequences need to go on: for each,
// those its tokens take that it does not hold (all of them after a
// preemption), and one more to grow into.
func (b *Batcher) shortfall() int {
	n := 0
	for _, r := range b.running {
		if !r.done {
			s := r.cur
			n += max(0, b.kv.BlocksFor(len(s.tokens))+1-len(s.kv.Blocks()))
		}
	}
	return n
}

// startNeed is the KV blocks the first stage of r takes from the pool when
// it starts: its prompt's, less those that running sequences hold and share
// with it through the prefix cache, and one more to grow into.
func (b *Batcher) startNeed(r *request) int {
	prompt := r.prompt
	if r.chain {
		prompt = b.first
	}
	return b.kv.BlocksFor(len(prompt)) - b.kv.Shared(r.imgHash, prompt) + 1
}

// startStage builds stage's sequence, its prompt holding the hand-off list
// of the stage before, and looks the prompt up in the prefix cache.
func (b *Batcher) startStage(r *request, stage chain.Stage) {
	prompt := r.prompt
	maxNew := r.maxNew[0]
	if r.chain {
		prompt = tokenizer.EncodeImagePrompt(b.tok, chain.Template(r.handoff.Prompt(stage)), b.spec.ImageTokens)
		maxNew = r.maxNew[stage-1]
	}
	if len(prompt) >= b.spec.MaxContext {
		b.fail(r, fmt.Errorf("%w: stage %d prompt has %d tokens, the context holds %d",
			ErrPromptTooLong, stage, len(prompt), b.spec.MaxContext))
		return
	}
	sampler, err := sample.New(r.params)
	if err != nil { // validated at submission
		b.fail(r, fmt.Errorf("%w: %w", ErrInternal, err))
		return
	}
	s := &seq{
		req:       r,
		stage:     stage,
		tokens:    slices.Clip(prompt),
		promptLen: len(prompt),
		imgAt:     slices.Index(prompt, engine.ImageToken),
		kv:        b.kv.NewSeq(r.imgHash),
		sampler:   sampler,
		det:       newDetok(b.tok, r.stops),
		spec:      b.newDrafter(r),
		maxNew:    min(maxNew, b.spec.MaxContext-len(prompt)),
		start:     time.Now(),
	}
	if stage == r.firstStage() {
		s.start = r.submitted // first-token latency includes the queue
	}
	if b.cfg.ChainReuse {
		s.cached = b.match(s)
	}
	r.cur = s
	label := stageLabel(stage)
	b.m.promptTokens.WithLabelValues(label).Add(float64(len(prompt)))
	if b.needsImage(s) {
		b.announceReady(r) // now, or once the image's features are ready
		return
	}
	if r.img != nil && !r.reported {
		// Reuse mode: the prefix cache holds the image positions.
		r.reported = true
		r.out.push(Event{Kind: EventImageEncoded, Stage: stage, Cached: true})
	}
	b.announce(s)
}

// announce sends the EventStageStarted of s: after the image event, when
// the stage is ready to prefill.
func (b *Batcher) announce(s *seq) {
	s.announced = true
	s.req.out.push(Event{Kind: EventStageStarted, Stage: s.stage,
		Usage: Usage{PromptTokens: s.promptLen, CachedTokens: s.cached}})
}

// match looks the sequence's tokens up in the prefix cache.
func (b *Batcher) match(s *seq) int {
	n := b.kv.Match(s.kv, s.tokens)
	s.computed = n
	b.m.prefixQuery.Add(float64(len(s.tokens)))
	b.m.prefixHit.Add(float64(n))
	return n
}

// needsImage reports whether image positions of s remain to be run.
func (b *Batcher) needsImage(s *seq) bool {
	return s.imgAt >= 0 && s.computed < s.imgAt+b.spec.ImageTokens
}

// encode queues the vision encoder on up to MaxEncodeBatch images that
// running sequences need, started chains first. In reuse mode features come
// from the feature cache when they can, and one image is encoded once even
// when several requests need it. The engine may return before the encode
// has run (a GPU queues it on its own stream): forward schedules a
// request's image rows once its features are ready and runs the other
// sequences' work meanwhile.
func (b *Batcher) encode() {
	var (
		imgs  []engine.Image
		users [][]*request // users[i] wait for imgs[i]
		index = map[kvcache.Hash]int{}
	)
	for _, r := range b.prioritized() {
		if r.features != nil || !b.needsImage(r.cur) {
			continue
		}
		if b.cfg.ChainReuse {
			if f, ok := b.feats.get(r.imgHash); ok {
				b.setFeatures(r, f, true)
				continue
			}
			if i, ok := index[r.imgHash]; ok {
				users[i] = append(users[i], r)
				continue
			}
		}
		if len(imgs) == b.cfg.MaxEncodeBatch {
			continue
		}
		index[r.imgHash] = len(imgs)
		imgs = append(imgs, *r.img)
		users = append(users, []*request{r})
	}
	if len(imgs) == 0 {
		return
	}
	t0 := time.Now()
	out, err := b.eng.EncodeImages(imgs)
	if b.deviceLost(err) {
		return
	}
	if err == nil && len(out) != len(imgs) {
		for _, h := range out {
			h.Release()
		}
		err = fmt.Errorf("engine returned %d feature sets for %d images", len(out), len(imgs))
	}
	b.m.visionRuns.Add(float64(len(imgs)))
	for i, rs := range users {
		if err != nil {
			for _, r := range rs {
				b.fail(r, fmt.Errorf("%w: vision encoder: %w", ErrInternal, err))
			}
			continue
		}
		f := &features{h: out[i], start: t0}
		for _, r := range rs {
			b.setFeatures(r, f, false)
		}
		if b.cfg.ChainReuse {
			b.feats.put(rs[0].imgHash, f)
		}
	}
}

// setFeatures gives r a reference to its image's features.
func (b *Batcher) setFeatures(r *request, f *features, cached bool) {
	r.features, r.cachedFeatures = f.retain(), cached
	b.announceReady(r)
}

// announceReady reports whether r's features are ready, and once they are,
// sends its EventImageEncoded and the start of its stage.
func (b *Batcher) announceReady(r *request) bool {
	f := r.features
	if f == nil || !f.isReady() {
		return false
	}
	if !r.reported {
		r.reported = true
		var t Timing
		if !r.cachedFeatures {
			t.Total = f.took
		}
		r.out.push(Event{Kind: EventImageEncoded, Stage: r.cur.stage, Cached: r.cachedFeatures, Timing: t})
	}
	if !r.cur.announced {
		b.announce(r.cur)
	}
	return true
}

// releaseFeatures drops r's reference to its image's features.
func (r *request) releaseFeatures() {
	if r.features != nil {
		r.features.release()
		r.features = nil
	}
}

// prioritized returns the unfinished running requests in scheduling order:
// stages of started chains (and preempted sequences) before the first stage
// of new ones, then admission order.
func (b *Batcher) prioritized() []*request {
	rs := slices.DeleteFunc(slices.Clone(b.running), func(r *request) bool { return r.done })
	slices.SortStableFunc(rs, func(x, y *request) int {
		return cmp.Or(cmp.Compare(b.rank(x), b.rank(y)), cmp.Compare(x.order, y.order))
	})
	return rs
}

// rank is 0 for sequences of started chains, 1 for new ones.
func (b *Batcher) rank(r *request) int {
	if r.cur.stage == r.firstStage() && r.cur.computed < r.cur.promptLen {
		return 1
	}
	return 0
}

// forward builds one batch under the token budget (decode tokens first,
// then prefill chunks in priority order), runs it and consumes the logits.
func (b *Batcher) forward() {
	order := b.prioritized()
	// Decoding sequences (one token to run) go first: they keep the
	// inter-token latency low and cost one token each. After a step in
	// which a sequence lacked blocks, all go in admission order instead, so
	// that it takes them from newer requests before these grow again.
	decoding := func(r *request) int {
		if len(r.cur.tokens)-r.cur.computed == 1 {
			return 0
		}
		return 1
	}
	if b.starved {
		slices.SortFunc(order, func(x, y *request) int { return cmp.Compare(x.order, y.order) })
	} else {
		slices.SortStableFunc(order, func(x, y *request) int { return cmp.Compare(decoding(x), decoding(y)) })
	}
	b.starved = false
	budget := b.cfg.MaxBatchTokens
	var (
		chunks  []engine.Chunk
		seqs    []*seq
		inBatch = map[*request]bool{}
	)
	// Drafts take only the budget the decode tokens leave, only tokens
	// likely enough accepted for the step's size (rowCost), and none in a
	// step of more than SpeculativeMaxBatch decode tokens.
	decoders := 0
	for _, r := range order {
		if !r.done && decoding(r) == 0 {
			decoders++
		}
	}
	spare, cost := budget-decoders, rowCost(decoders)
	if decoders > b.cfg.SpeculativeMaxBatch {
		spare = 0
	}
	for _, r := range order {
		s := r.cur
		if r.done || budget == 0 || (b.needsImage(s) && !b.announceReady(r)) { // done: failed in this step
			continue
		}
		if s.preempted {
			s.preempted = false
			if b.cfg.ChainReuse {
				b.match(s)
			}
		}
		if b.cfg.ChainReuse && s.computed == s.cached && s.computed < s.promptLen {
			wait, rematch := b.sharedPrefill(r)
			if wait {
				continue
			}
			if rematch {
				b.kv.Free(s.kv)
				s.cached = b.match(s)
			}
		}
		if c, ok := b.verifyChunk(s, spare, cost); ok {
			chunks = append(chunks, c)
			seqs = append(seqs, s)
			inBatch[r] = true
			budget -= len(c.Tokens)
			spare -= len(c.Tokens) - 1
			continue
		}
		n := min(len(s.tokens)-s.computed, budget)
		if n <= 0 || !b.reserve(r, s.computed+n, inBatch) {
			continue
		}
		chunks = append(chunks, b.chunk(s, n))
		seqs = append(seqs, s)
		inBatch[r] = true
		budget -= n
	}
	if len(chunks) == 0 {
		b.awaitFeatures(order)
		return
	}
	b.m.batchSize.Observe(float64(len(chunks)))
	b.m.stepTokens.Observe(float64(b.cfg.MaxBatchTokens - budget))
	out, err := b.eng.Forward(chunks)
	if b.deviceLost(err) {
		return
	}
	want := 0 // every chunk's rows come back picked (chunk, verifyChunk)
	for _, c := range chunks {
		want += c.LogitRows()
	}
	if err == nil && (len(out.Logits) != 0 || len(out.Tokens) != want) {
		err = fmt.Errorf("engine returned %d logit rows and %d token ids for %d token ids requested",
			len(out.Logits), len(out.Tokens), want)
	}
	if err != nil {
		for _, s := range seqs {
			b.fail(s.req, fmt.Errorf("%w: forward: %w", ErrInternal, err))
		}
		return
	}
	ids := out.Tokens
	for i, c := range chunks {
		s := seqs[i]
		picked := ids[:c.LogitRows()]
		ids = ids[len(picked):]
		if c.AllLogits {
			b.verify(s, c.Tokens, picked)
			continue
		}
		b.kv.Append(s.kv, c.Tokens, b.cfg.ChainReuse)
		s.computed += len(c.Tokens)
		if c.Logits {
			b.onToken(s, picked[0])
		}
	}
}

// awaitFeatures, for a step with nothing to run, blocks until the first
// request in order whose image rows wait for its features has them, rather
// than polling them in a busy loop.
func (b *Batcher) awaitFeatures(order []*request) {
	for _, r := range order {
		if !r.done && b.needsImage(r.cur) && r.features != nil && !r.features.isReady() {
			r.features.h.Wait()
			return
		}
	}
}

// sharedPrefill looks, for a sequence about to start its prefill, for a
// running sequence of the same image that prefills the same leading blocks
// ahead of it (further along, or as far and admitted earlier). While that
// leader has not written the shared blocks, r waits (wait), so concurrent
// requests for one image compute its prefix once; once it has, r should
// look its prompt up again (rematch).
func (b *Batcher) sharedPrefill(r *request) (wait, rematch bool) {
	s, bs := r.cur, b.kv.BlockSize()
	for _, l := range b.running {
		ls := l.cur
		if l == r || l.done || l.imgHash != r.imgHash || ls.preempted {
			continue
		}
		if ls.computed < s.computed || (ls.computed == s.computed && l.order > r.order) {
			continue // not ahead of r
		}
		common := 0
		for common < min(ls.promptLen, s.promptLen-1) && ls.tokens[common] == s.tokens[common] {
			common++
		}
		shared := common / bs * bs
		if shared <= s.computed {
			continue
		}
		if ls.computed < shared {
			return true, false
		}
		rematch = true
	}
	return false, rematch
}

// chunk returns the next n tokens of s as a Chunk: its last row, when it
// has one, picked by the engine (Greedy, or a Sample at the next number of
// s's stream).
func (b *Batcher) chunk(s *seq, n int) engine.Chunk {
	p := s.sampler.Params()
	c := engine.Chunk{
		Blocks: s.kv.Blocks(),
		Pos:    s.computed,
		Tokens: s.tokens[s.computed : s.computed+n],
		Logits: s.computed+n == len(s.tokens),
		Greedy: p.Greedy(),
	}
	if c.Logits && !c.Greedy {
		s.draw = engine.Sampling{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, U: s.sampler.Uniform()}
		c.Sample = &s.draw
	}
	if s.imgAt >= 0 {
		// Image rows of positions [lo, hi) of the chunk.
		lo := max(s.computed, s.imgAt)
		hi := min(s.computed+n, s.imgAt+b.spec.ImageTokens)
		if lo < hi {
			c.Image, c.ImageRow = s.req.features.h, lo-s.imgAt
		}
	}
	return c
}

// reserve grows r's block table to n positions. When the pool is short it
// preempts running requests admitted after r that are not in this step's
// batch, newest first (their sequences are recomputed later); no request is
// preempted for one admitted after it. It returns false when r has to wait,
// and the next step then builds its batch in admission order (see
// forward), so the oldest request never waits for a newer one; when r alone
// cannot fit the pool, r fails.
func (b *Batcher) reserve(r *request, n int, inBatch map[*request]bool) bool {
	for {
		err := b.kv.Reserve(r.cur.kv, n)
		if err == nil {
			return true
		}
		victim := b.victim(r, inBatch)
		if victim == nil {
			if b.kv.Stats().Used == len(r.cur.kv.Blocks()) && len(inBatch) == 0 {
				b.fail(r, fmt.Errorf("%w: %w", ErrPromptTooLong, err))
			}
			b.starved = true
			return false
		}
		b.m.preemptions.Inc()
		b.kv.Free(victim.cur.kv)
		victim.cur.computed = 0
		victim.cur.preempted = true
	}
}

// victim picks the running request admitted last after r that holds blocks
// and is not in the batch being built.
func (b *Batcher) victim(r *request, inBatch map[*request]bool) *request {
	for i := len(b.running) - 1; i >= 0 && b.running[i] != r; i-- {
		v := b.running[i]
		if !v.done && !inBatch[v] && len(v.cur.kv.Blocks()) > 0 {
			return v
		}
	}
	return nil
}

// onToken takes id as the next token of s and streams it. It reports
// whether the stage goes on (false: id ended it).
func (b *Batcher) onToken(s *seq, id int32) bool {
	r := s.req
	now := time.Now()
	label := stageLabel(s.stage)
	if s.first.IsZero() {
		s.first = now
		b.m.ttft.WithLabelValues(label).Observe(now.Sub(s.start).Seconds())
	} else {
		b.m.itl.WithLabelValues(label).Observe(now.Sub(s.last).Seconds())
	}
	s.last = now
	if id == b.spec.EOS && !r.ignoreEOS {
		b.endStage(s, "eos")
		return false
	}
	s.tokens = append(s.tokens, id)
	s.pending = append(s.pending, id)
	b.m.genTokens.WithLabelValues(label).Inc()
	delta, stopped := s.det.push(id)
	if delta != "" {
		r.out.push(Event{Kind: EventDelta, Stage: s.stage, Text: delta, TokenIDs: s.pending})
		s.pending = nil
	}
	switch {
	case stopped:
		b.endStage(s, "stop")
	case len(s.generated()) >= s.maxNew:
		b.endStage(s, "length")
	default:
		return true
	}
	return false
}

// endStage finishes the running stage of a request and starts the next one
// or completes the request.
func (b *Batcher) endStage(s *seq, finish string) {
	r := s.req
	now := time.Now()
	delta, text := s.det.finish()
	if delta != "" || len(s.pending) > 0 {
		r.out.push(Event{Kind: EventDelta, Stage: s.stage, Text: delta, TokenIDs: s.pending})
		s.pending = nil
	}
	res := StageResult{
		Stage:    s.stage,
		Text:     text,
		TokenIDs: slices.Clone(s.generated()),
		Usage:    Usage{PromptTokens: s.promptLen, CachedTokens: s.cached, GeneratedTokens: len(s.generated())},
		Timing:   Timing{Total: now.Sub(s.start)},
		Finish:   finish,
	}
	if !s.first.IsZero() {
		res.Timing.FirstToken = s.first.Sub(s.start)
	}
	if s.stage == r.firstStage() {
		res.Timing.Queued = r.admitted.Sub(r.submitted)
	}
	if r.chain {
		res.Entities = r.advance(s.stage, text)
		res.Handoff = r.handoff.List()
	}
	r.results = append(r.results, res)
	r.out.push(Event{Kind: EventStageFinished, Stage: s.stage, Text: text, Entities: res.Entities,
		Handoff: res.Handoff, Finish: finish, Usage: res.Usage, Timing: res.Timing})
	if s.spec != nil {
		b.specPast[s.stage].add(s.generated())
	}
	// Free before the next stage's lookup: the blocks stay in the prefix
	// cache (nothing is allocated in between), and the lookup takes them.
	b.kv.Free(s.kv)
	if !b.cfg.ChainReuse {
		r.releaseFeatures() // the baseline re-encodes the image every stage
		r.reported = false
	}
	if r.chain && s.stage < r.stages {
		b.startStage(r, s.stage+1)
		return
	}
	b.complete(r)
}

// complete ends a request successfully.
func (b *Batcher) complete(r *request) {
	res := &Result{Stages: r.results, Entities: r.handoff.Entities()}
	if r.img != nil {
		res.Width, res.Height = r.img.Width, r.img.Height
	}
	if last := r.results[len(r.results)-1]; last.Stage == chain.Caption {
		res.Caption, res.Mentions = last.Text, last.Entities
	}
	b.m.e2e.WithLabelValues(stageLabel(r.cur.stage)).Observe(time.Since(r.submitted).Seconds())
	b.end(r, Event{Kind: EventDone, Result: res})
}

// fail ends a request with err, freeing its blocks.
func (b *Batcher) fail(r *request, err error) {
	if r.cur != nil {
		b.kv.Free(r.cur.kv)
	}
	b.end(r, Event{Kind: EventDone, Err: err})
}

// end sends the final event of r, once.
func (b *Batcher) end(r *request, ev Event) {
	if r.done {
		return
	}
	r.done = true
	r.releaseFeatures()
	r.out.push(ev)
	b.active.Add(-1)
}

// failRunning fails every admitted request with err and empties the KV
// pool. It frees no sequence one by one, as it also runs after a panic that
// may have left the block tables and the engine's KV memory inconsistent.
func (b *Batcher) failRunning(err error) {
	for _, r := range b.running {
		b.end(r, Event{Kind: EventDone, Err: err})
	}
	b.running = nil
	b.kv.Reset()
}

// failWaiting fails every queued request with err.
func (b *Batcher) failWaiting(err error) {
	b.mu.Lock()
	gone := b.waiting
	b.waiting = nil
	b.mu.Unlock()
	for _, r := range gone {
		b.fail(r, err)
	}
}
