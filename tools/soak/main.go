// Command soak is Pancap Serve's soak test (`make soak`, not in CI): it
// starts `pancap serve` on loopback, drives it with ghz
// (github.com/bojand/ghz) for a bounded time with three concurrent loads —
// valid captions, invalid requests, and streams the client cancels
// mid-way — and reports the requests served, the status codes, and the
// server's resident memory and goroutine count before, during and after the
// load. It exits non-zero when the server crashed, a call got a code other
// than the expected ones, the server did not exit 0 on SIGTERM, or memory or
// goroutines did not come back to their starting level.
//
// Configuration, from the environment:
//
//	SOAK_DURATION     load duration (default 10m)
//	SOAK_PANCAP       pancap binary (default bin/pancap)
//	SOAK_GHZ          ghz binary (default bin/ghz)
//	SOAK_CONCURRENCY  concurrent valid callers (default 8)
//	SOAK_JSON         also write the report as JSON to this file
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// errSoak is wrapped by every failure of the soak.
var errSoak = errors.New("soak")

// settle is how long the server may take after the load to come back to
// rest before the final sample.
const settle = 15 * time.Second

// tolerance is how far above their starting level RSS and goroutines may
// stay after the load (the "within 10%").
const tolerance = 0.10

// load is one ghz run of the mix.
type load struct {
	Name     string   `json:"name"`
	Call     string   `json:"call"`
	Expected []string `json:"expected"` // acceptable status codes
	args     []string // ghz flags beyond the common ones
	data     any      // the request(s), as ghz JSON
}

// ghzReport is the part of ghz's JSON output the soak reads.
type ghzReport struct {
	Count        int64            `json:"count"`
	RPS          float64          `json:"rps"`
	Average      int64            `json:"average"` // ns
	StatusCodes  map[string]int64 `json:"statusCodeDistribution"`
	ErrorsByText map[string]int64 `json:"errorDistribution"`
}

// sample is the server's state at one moment.
type sample struct {
	At         string `json:"at"`
	RSSBytes   int64  `json:"rss_bytes"`
	Goroutines int64  `json:"goroutines"`
}

// result is the soak's report.
type result struct {
	Date       string               `json:"date"`
	Duration   string               `json:"duration"`
	Loads      []load               `json:"loads"`
	Reports    map[string]ghzReport `json:"reports"`
	Samples    []sample             `json:"samples"`
	ServerExit string               `json:"server_exit"`
	Problems   []string             `json:"problems"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run() error {
	dur, err := time.ParseDuration(env("SOAK_DURATION", "10m"))
	if err != nil || dur <= 0 {
		return fmt.Errorf("%w: SOAK_DURATION: %v", errSoak, err)
	}
	conc, err := strconv.Atoi(env("SOAK_CONCURRENCY", "8"))
	if err != nil || conc < 1 {
		return fmt.Errorf("%w: SOAK_CONCURRENCY: %v", errSoak, err)
	}
	pancap, ghz := env("SOAK_PANCAP", "bin/pancap"), env("SOAK_GHZ", "bin/ghz")
	for _, b := range []string{pancap, ghz} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w: %w (make build; GOBIN=$PWD/bin go install github.com/bojand/ghz/cmd/ghz@latest)", errSoak, err)
		}
	}
	dir, err := os.MkdirTemp("", "pancap-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	srv, err := startServer(pancap, dir)
	if err != nil {
		return err
	}
	defer srv.kill()
	res := &result{Date: time.Now().UTC().Format(time.RFC3339), Duration: dur.String(), Reports: map[string]ghzReport{}}
	take := func(at string) {
		s, err := srv.sample(at)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("sample %s: %v", at, err))
			return
		}
		res.Samples = append(res.Samples, s)
		fmt.Fprintf(os.Stderr, "soak: %-10s rss %6.1f MiB, %d goroutines\n", at, float64(s.RSSBytes)/(1<<20), s.Goroutines)
	}
	// Warm up with the same mix, so the baseline is the server's working
	// set under load (heap, pools, KV blocks), not its idle start.
	res.Loads = mix(conc)
	warm := min(max(dur/10, 10*time.Second), time.Minute)
	warmReports := map[string]ghzReport{}
	res.Problems = append(res.Problems, runMix(ghz, srv.addr, dir, res.Loads, warm, warmReports, nil)...)
	time.Sleep(settle)
	take("start")
	res.Problems = append(res.Problems, runMix(ghz, srv.addr, dir, res.Loads, dur, res.Reports, func() { take("load") })...)
	if srv.exited() {
		res.Problems = append(res.Problems, "the server died during the load")
	} else {
		time.Sleep(settle)
		take("end")
		res.ServerExit = srv.terminate(30 * time.Second)
		if res.ServerExit != "exit 0" {
			res.Problems = append(res.Problems, "server: "+res.ServerExit)
		}
	}
	res.Problems = append(res.Problems, compare(res.Samples)...)
	printReport(os.Stdout, res)
	if path := os.Getenv("SOAK_JSON"); path != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("%w: %d problems", errSoak, len(res.Problems))
	}
	return nil
}

// testImage is a small PNG with some structure.
func testImage() []byte {
	m := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 31 % 251)
	}
	var b bytes.Buffer
	png.Encode(&b, m)
	return b.Bytes()
}

// mix is the load: valid four-stage captions at conc callers, invalid
// requests of many kinds, and streams cancelled mid-way by the client
// (ghz closes them after --stream-call-duration) or by a deadline.
func mix(conc int) []load {
	img := testImage()
	valid := map[string]any{"image": img, "stages": 4, "max_new_tokens": []int{48, 48, 24, 96}}
	long := map[string]any{"image": img, "stages": 4, "max_new_tokens": []int{512, 512, 512, 512}, "ignore_eos": true}
	invalid := []map[string]any{
		{"image": []byte("not an image")},
		{"image": img[:len(img)/2]},
		{"image": img, "sampling": map[string]any{"temperature": -1}},
		{"image": img, "sampling": map[string]any{"top_p": 2}},
		{"image": img, "sampling": map[string]any{"top_k": -5}},
		{"image": img, "stages": 9},
		{"image": img, "max_new_tokens": []int{100000}},
		{"image": img, "stop": []string{""}},
		{},
	}
	return []load{
		{Name: "valid", Call: "pancap.v1.Captioner.Caption", Expected: []string{"OK"},
			args: []string{"-c", strconv.Itoa(conc)}, data: valid},
		{Name: "invalid", Call: "pancap.v1.Captioner.Caption", Expected: []string{"InvalidArgument"},
			args: []string{"-c", "2", "-r", "50"}, data: invalid},
		{Name: "cancelled", Call: "pancap.v1.Captioner.StreamCaption", Expected: []string{"OK", "Canceled"},
			args: []string{"-c", "2", "--stream-call-duration", "400ms"}, data: long},
		{Name: "deadline", Call: "pancap.v1.Captioner.StreamCaption", Expected: []string{"DeadlineExceeded"},
			args: []string{"-c", "2", "-t", "250ms"}, data: long},
	}
}

// runMix runs the loads concurrently for dur, storing their reports, and
// calls tick (when not nil) four times along the way. It returns the
// problems: ghz failures and unexpected status codes.
func runMix(ghz, addr, dir string, loads []load, dur time.Duration, reports map[string]ghzReport, tick func()) []string {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
	)
	for _, l := range loads {
		wg.Go(func() {
			rep, err := runGhz(ghz, addr, dir, l, dur)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", l.Name, err))
				return
			}
			reports[l.Name] = rep
			for code, n := range rep.StatusCodes {
				if !slices.Contains(l.Expected, code) {
					problems = append(problems, fmt.Sprintf("%s: %d calls got unexpected code %s %v", l.Name, n, code, rep.ErrorsByText))
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if tick != nil {
		ticker := time.NewTicker(dur / 4)
		defer ticker.Stop()
		for running := true; running; {
			select {
			case <-ticker.C:
				tick()
			case <-done:
				running = false
			}
		}
	}
	<-done
	return problems
}

// runGhz runs one load against addr for dur.
func runGhz(ghz, addr, dir string, l load, dur time.Duration) (ghzReport, error) {
	data, err := json.Marshal(l.data)
	if err != nil {
		return ghzReport{}, err
	}
	dataFile := filepath.Join(dir, l.Name+".json")
	if err := os.WriteFile(dataFile, data, 0o644); err != nil {
		return ghzReport{}, err
	}
	// --duration-stop wait: calls in flight at the end finish normally
	// instead of being reported as failed.
	args := []string{"--insecure", "--call", l.Call, "-D", dataFile, "-O", "json", "--connections", "2",
		"-z", dur.String(), "--duration-stop", "wait"}
	args = append(append(args, l.args...), addr)
	cmd := exec.Command(ghz, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return ghzReport{}, fmt.Errorf("%w: ghz %s: %v\n%s", errSoak, l.Name, err, stderr.String())
	}
	var rep ghzReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return ghzReport{}, fmt.Errorf("%w: ghz %s output: %v", errSoak, l.Name, err)
	}
	return rep, nil
}

// server is the `pancap serve` process under test.
type server struct {
	cmd         *exec.Cmd
	addr        string
	metricsAddr string
	done        chan struct{}
	waitErr     error
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startServer starts pancap serve with a /metrics listener and waits until
// it is SERVING.
func startServer(bin, dir string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	s := &server{addr: addr, metricsAddr: maddr, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", maddr, "--log-level", "warn", "--drain-timeout", "10s")
	s.cmd.Stderr = logFile
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if s.exited() {
			return nil, fmt.Errorf("%w: pancap serve exited at start: %v", errSoak, s.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
	}
	s.kill()
	return nil, fmt.Errorf("%w: pancap serve never became SERVING", errSoak)
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill ends the server if it still runs.
func (s *server) kill() {
	if !s.exited() {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// terminate sends SIGTERM and describes how the server ended.
func (s *server) terminate(within time.Duration) string {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return "signal: " + err.Error()
	}
	select {
	case <-s.done:
		if s.waitErr != nil {
			return s.waitErr.Error()
		}
		return "exit 0"
	case <-time.After(within):
		s.kill()
		return fmt.Sprintf("still running %v after SIGTERM (killed)", within)
	}
}

// sample reads the server's RSS from /proc and its goroutine count from the
// Prometheus go collector on /metrics.
func (s *server) sample(at string) (sample, error) {
	sm := sample{At: at}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return sm, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return sm, err
			}
			sm.RSSBytes = kb << 10
		}
	}
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		return sm, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				return sm, err
			}
			sm.Goroutines = int64(v)
			return sm, nil
		}
	}
	return sm, fmt.Errorf("%w: /metrics has no go_goroutines", errSoak)
}

// compare checks that the end sample is back within tolerance of the start.
func compare(samples []sample) []string {
	var start, end *sample
	for i := range samples {
		switch samples[i].At {
		case "start":
			start = &samples[i]
		case "end":
			end = &samples[i]
		}
	}
	if start == nil || end == nil {
		return []string{"no start or end sample"}
	}
	var p []string
	if float64(end.RSSBytes) > float64(start.RSSBytes)*(1+tolerance) {
		p = append(p, fmt.Sprintf("RSS %d → %d bytes: more than %.0f%% above the start", start.RSSBytes, end.RSSBytes, tolerance*100))
	}
	if float64(end.Goroutines) > float64(start.Goroutines)*(1+tolerance) {
		p = append(p, fmt.Sprintf("goroutines %d → %d: more than %.0f%% above the start", start.Goroutines, end.Goroutines, tolerance*100))
	}
	return p
}

// printReport writes the report as Markdown, ready for docs/reliability.md.
func printReport(w io.Writer, r *result) {
	fmt.Fprintf(w, "Soak %s, load for %s (pancap serve, embedded default model, loopback)\n\n", r.Date, r.Duration)
	fmt.Fprintln(w, "| load | call | requests | rps | mean latency | status codes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	var total int64
	for _, l := range r.Loads {
		rep := r.Reports[l.Name]
		total += rep.Count
		var codes []string
		for _, c := range slices.Sorted(maps.Keys(rep.StatusCodes)) {
			codes = append(codes, fmt.Sprintf("%s %d", c, rep.StatusCodes[c]))
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.1f | %v | %s |\n", l.Name, strings.TrimPrefix(l.Call, "pancap.v1.Captioner."),
			rep.Count, rep.RPS, time.Duration(rep.Average).Round(time.Millisecond), strings.Join(codes, ", "))
	}
	fmt.Fprintf(w, "\nrequests in all: %d\n\n", total)
	fmt.Fprintln(w, "| sample | RSS (MiB) | goroutines |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, s := range r.Samples {
		fmt.Fprintf(w, "| %s | %.1f | %d |\n", s.At, float64(s.RSSBytes)/(1<<20), s.Goroutines)
	}
	fmt.Fprintf(w, "\nserver on SIGTERM: %s\n", r.ServerExit)
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "problems: none")
	}
	for _, p := range r.Problems {
		fmt.Fprintln(w, "problem:", p)
	}
}
