package openai

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
	"github.com/pancap-serve/pancap/server"
)

// DefaultImageURLTimeout bounds the download of a remote image.
const DefaultImageURLTimeout = 10 * time.Second

// bodyReadTimeout bounds reading a request body (a slow client must not
// hold a handler forever); the answer's own time is not bounded.
const bodyReadTimeout = 60 * time.Second

// Config configures the HTTP API. The limits, the token, TLS and the drain
// timeout are the server's (server.Config).
type Config struct {
	Addr            string        // listen address of Start; "" serves nothing
	Metrics         bool          // also serve /metrics (the server's registry) on Addr
	ImageURLHosts   []string      // hosts whose https image URLs are fetched; empty: only data: URIs
	ImageURLTimeout time.Duration // per remote image; 0: DefaultImageURLTimeout
	HTTPClient      *http.Client  // fetches remote images; nil: a plain client (tests pass one trusting their server)
}

// API is the HTTP handler of the OpenAI-compatible API over one server.
type API struct {
	srv     *server.Server
	log     *slog.Logger
	mux     *http.ServeMux
	fetch   *fetcher // nil: remote image URLs are refused
	started time.Time
	running sync.WaitGroup // chat handlers in flight
}

// New builds the API for srv, registering its request counter on srv's
// registry.
func New(cfg Config, srv *server.Server) (*API, error) {
	sc := srv.Config()
	timeout := cfg.ImageURLTimeout
	if timeout == 0 {
		timeout = DefaultImageURLTimeout
	}
	a := &API{srv: srv, log: sc.Logger, mux: http.NewServeMux(), started: time.Now(),
		fetch: newFetcher(cfg.ImageURLHosts, cfg.HTTPClient, timeout, sc.Image.MaxBytes)}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pancap_http_requests_total", Help: "Requests to the OpenAI-compatible HTTP API by route and status."},
		[]string{"handler", "code"})
	if err := srv.Registerer().Register(requests); err != nil {
		return nil, fmt.Errorf("openai: metrics: %w", err)
	}
	route := func(pattern, name string, h http.HandlerFunc) {
		a.mux.Handle(pattern, promhttp.InstrumentHandlerCounter(requests.MustCurryWith(prometheus.Labels{"handler": name}), a.logged(h)))
	}
	route("POST /v1/chat/completions", "chat_completions", a.guard(a.chat))
	route("GET /v1/models", "models", a.guard(a.models))
	route("GET /v1/models/{model}", "model", a.guard(a.model))
	route("GET /health", "health", a.health)
	if cfg.Metrics {
		a.mux.Handle("GET /metrics", srv.MetricsHandler())
	}
	route("/", "other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, code: "not_found",
			message: fmt.Sprintf("no route %s %s; this server serves POST /v1/chat/completions, GET /v1/models, GET /health", r.Method, r.URL.Path)})
	})
	return a, nil
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logged logs every request when it ends, as the gRPC server logs every
// call: client mistakes at info, overload at warn, failures at error.
func (a *API) logged(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		lvl := slog.LevelInfo
		switch {
		case sw.status >= 500:
			lvl = slog.LevelError
		case sw.status == http.StatusTooManyRequests:
			lvl = slog.LevelWarn
		}
		a.log.Log(r.Context(), lvl, "finished http request", "method", r.Method, "path", r.URL.Path,
			"status", max(sw.status, http.StatusOK), "duration", time.Since(start), "request_id", r.Header.Get("X-Request-Id"))
	}
}

// guard applies the server's bearer token and rate limit (one bucket for
// both transports), as the gRPC interceptors do for every call but health.
func (a *API) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "bearer") {
			token = ""
		}
		if !a.srv.Authorized(strings.TrimSpace(token)) {
			writeError(w, &apiError{status: http.StatusUnauthorized, code: "invalid_api_key",
				message: "missing or invalid bearer token: send \"Authorization: Bearer <token>\" with the server's --auth-token"})
			return
		}
		if !a.srv.Allow() {
			writeError(w, &apiError{status: http.StatusTooManyRequests, code: "rate_limit_exceeded",
				message: "rate limit exceeded (--rate-limit)"})
			return
		}
		h(w, r)
	}
}

// health answers 200 while the server reports SERVING (the model is
// loaded and no shutdown has begun), 503 otherwise.
func (a *API) health(w http.ResponseWriter, _ *http.Request) {
	if a.srv.Serving() {
		writeJSON(w, http.StatusOK, map[string]string{"status": "serving"})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_serving"})
}

// modelJSON is one entry of GET /v1/models.
type modelJSON struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (a *API) modelEntry() modelJSON {
	return modelJSON{ID: ModelID, Object: "model", Created: a.started.Unix(), OwnedBy: "pancap"}
}

func (a *API) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []modelJSON{a.modelEntry()}})
}

func (a *API) model(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("model"); id != ModelID {
		writeError(w, &apiError{status: http.StatusNotFound, param: "model", code: "model_not_found",
			message: fmt.Sprintf("the model %q does not exist; GET /v1/models lists %q", id, ModelID)})
		return
	}
	writeJSON(w, http.StatusOK, a.modelEntry())
}

// run is one chat completion on its way through the backend.
type run struct {
	a        *API
	req      *chatRequest
	caption  *pb.CaptionRequest  // a chain run, or
	generate *pb.GenerateRequest // a free-form prompt
	id       string
	created  int64
}

// chat serves POST /v1/chat/completions.
func (a *API) chat(w http.ResponseWriter, r *http.Request) {
	a.running.Add(1)
	defer a.running.Done()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	req, aerr := parseChat(http.MaxBytesReader(w, r.Body, int64(a.srv.Config().MaxRecvMsgBytes)), int64(a.srv.Config().MaxRecvMsgBytes))
	rc.SetReadDeadline(time.Time{})
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.imageURL != "" {
		if a.fetch == nil {
			writeError(w, badParam(req.imageParam, "remote image URLs are off on this server: send the image as a data: URI (data:image/png;base64,…)"))
			return
		}
		img, err := a.fetch.fetch(r.Context(), req.imageURL)
		if err != nil {
			writeError(w, badParam(req.imageParam, "%v", err))
			return
		}
		req.image = img
	}
	run := &run{a: a, req: req, id: "chatcmpl-" + randomID(), created: time.Now().Unix()}
	rid := r.Header.Get("X-Request-Id")
	var pbReq any
	if req.chain() {
		run.caption = req.captionRequest(rid)
		pbReq = run.caption
	} else {
		run.generate = req.generateRequest(rid)
		pbReq = run.generate
	}
	if err := a.srv.Validate(pbReq); err != nil {
		field, _ := server.InvalidField(err)
		p := req.param(field)
		writeError(w, badParam(p, "%s", strings.TrimPrefix(err.Error(), field+": ")))
		return
	}
	if req.stream {
		run.stream(w, r)
		return
	}
	res, err := run.exec(r.Context(), nil)
	if err != nil {
		writeError(w, fromStatus(err))
		return
	}
	content, finish, u := answer(res)
	m := &msg{Role: "assistant", Content: &content}
	if req.chain() {
		m.Pancap = resultExt(res)
	}
	out := run.completion("chat.completion", choice{Message: m, FinishReason: &finish})
	out.Usage = &u
	writeJSON(w, http.StatusOK, out)
}

// exec runs the request on the server, handing events to emit.
func (x *run) exec(ctx context.Context, emit func(*batcher.Event) error) (*batcher.Result, error) {
	if x.caption != nil {
		return x.a.srv.RunCaption(ctx, x.caption, emit)
	}
	return x.a.srv.RunGenerate(ctx, x.generate, emit)
}

// completion returns an object of the run with one choice.
func (x *run) completion(object string, c choice) *completion {
	return &completion{ID: x.id, Object: object, Created: x.created, Model: x.req.model, Choices: []choice{c}}
}

// answeringStage is the stage whose text is the content of a chain run.
func (x *run) answeringStage() chain.Stage {
	if x.req.ext.Stages == 0 {
		return chain.Caption
	}
	return chain.Stage(x.req.ext.Stages)
}

// stream serves a run as server-sent events: chat.completion.chunk objects,
// the usage chunk when asked for, then [DONE]. The headers go out with the
// first event, so an error before it (a full queue, a bad image) keeps its
// HTTP status; a later one is sent as an error event. When the client goes
// away, the request's context ends and the backend's work with it.
func (x *run) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	started := false
	send := func(v any) error {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	chunk := func(d *msg, finish *string, e *ext) error {
		c := x.completion("chat.completion.chunk", choice{Delta: d, FinishReason: finish})
		c.Pancap = e
		return send(c)
	}
	isChain := x.req.chain()
	answering := x.answeringStage()
	empty := ""
	res, err := x.exec(r.Context(), func(ev *batcher.Event) error {
		if !started { // OpenAI's first chunk: the role
			if err := chunk(&msg{Role: "assistant", Content: &empty}, nil, nil); err != nil {
				return err
			}
		}
		if ev.Kind == batcher.EventDelta && (!isChain || ev.Stage == answering) {
			if ev.Text == "" {
				return nil
			}
			return chunk(&msg{Content: &ev.Text}, nil, nil)
		}
		if !isChain {
			return nil
		}
		if e := eventExt(ev, answering); e != nil {
			return chunk(&msg{}, nil, e)
		}
		return nil
	})
	if err != nil {
		ae := fromStatus(err)
		if !started {
			writeError(w, ae)
			return
		}
		if r.Context().Err() == nil {
			send(ae.body())
		}
		return
	}
	content, finish, u := answer(res)
	if !started { // the backend sent no event before its result
		if chunk(&msg{Role: "assistant", Content: &content}, nil, nil) != nil {
			return
		}
	}
	var e *ext
	if isChain {
		e = resultExt(res)
		e.Event = "done"
	}
	if chunk(&msg{}, &finish, e) != nil {
		return
	}
	if x.req.options.IncludeUsage {
		c := &completion{ID: x.id, Object: "chat.completion.chunk", Created: x.created, Model: x.req.model,
			Choices: []choice{}, Usage: &u}
		if send(c) != nil {
			return
		}
	}
	if _, err := fmt.Fprint(w, "data: [DONE]\n\n"); err == nil {
		rc.Flush()
	}
}

// randomID returns 24 random hex digits.
func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
