// Command scale-test is Pancap Serve's multi-replica test on one machine
// (`make scale-test`): it starts three `pancap serve` replicas of the
// embedded model on loopback and reaches them two ways, through nginx
// (grpc_pass over HTTP/2, an L7 load balancer from Debian's packages) and
// through the Go client's own round_robin over the three addresses. It
//
//  1. runs `pancap bench` through each way against 1, 2 and 3 replicas and
//     records requests, failures, throughput and the calls each replica
//     served;
//  2. sends SIGTERM to one replica in the middle of a load through each
//     way: every request must succeed (the replica drains its calls in
//     flight; the client retries UNAVAILABLE on calls not yet answered);
//  3. sends SIGKILL to one replica in the middle of a load through each
//     way: only the calls in flight on it may fail.
//
// Everything listens on 127.0.0.1; the run is bounded (about two minutes on
// two cores) and stops by itself. It prints a markdown report and exits
// non-zero when a check failed.
//
// Configuration, from the environment:
//
//	SCALE_PANCAP       pancap binary (default bin/pancap)
//	SCALE_NGINX        nginx binary (default nginx, from PATH or /usr/sbin)
//	SCALE_REQUESTS     requests of each throughput point (default 96)
//	SCALE_CONCURRENCY  requests in flight (default 6)
//	SCALE_DIR          folder of the logs and bench results (default a temporary one)
//	SCALE_JSON         also write the report as JSON to this file
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/benchmarks"
	"github.com/pancap-serve/pancap/client"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// errScale is wrapped by every failure of the test.
var errScale = errors.New("scale-test")

const (
	replicas     = 3
	drainTimeout = 20 * time.Second
	// faultRequests and faultTokens size the fault runs: long enough
	// chains that a signal finds calls in flight on every replica.
	faultRequests = 60
	faultTokens   = 96
	benchTokens   = 48
)

// config is the run's configuration.
type config struct {
	pancap, nginx, dir string
	requests, conc     int
}

// point is one `pancap bench` run.
type point struct {
	Way        string  `json:"way"`
	Replicas   int     `json:"replicas"`
	Requests   int     `json:"requests"`
	Failed     int     `json:"failed"`
	DurationS  float64 `json:"duration_s"`
	RPS        float64 `json:"request_throughput_rps"`
	TPS        float64 `json:"output_token_throughput_tps"`
	PerReplica []int   `json:"served_per_replica"`
}

// fault is one signal sent mid-run.
type fault struct {
	Way      string         `json:"way"`
	Signal   string         `json:"signal"`
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	Codes    map[string]int `json:"failure_codes,omitempty"`
	Retries  int64          `json:"retries"`
	InFlight int            `json:"in_flight_on_victim"` // StreamCaption calls open on it just before the signal
	Exit     string         `json:"victim_exit"`
	OK       bool           `json:"ok"`
	Why      string         `json:"why,omitempty"`
}

// report is the whole result.
type report struct {
	Started    time.Time `json:"started"`
	DurationS  float64   `json:"duration_s"`
	CPUs       int       `json:"cpus"`
	Throughput []point   `json:"throughput"`
	Faults     []fault   `json:"faults"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: %s=%q: want a positive integer", errScale, name, v)
	}
	return n, nil
}

func loadConfig() (config, error) {
	c := config{pancap: os.Getenv("SCALE_PANCAP"), nginx: os.Getenv("SCALE_NGINX"), dir: os.Getenv("SCALE_DIR")}
	if c.pancap == "" {
		c.pancap = "bin/pancap"
	}
	if c.nginx == "" {
		c.nginx = "nginx"
		if _, err := exec.LookPath(c.nginx); err != nil {
			c.nginx = "/usr/sbin/nginx"
		}
	}
	var err error
	if c.requests, err = envInt("SCALE_REQUESTS", 96); err != nil {
		return c, err
	}
	if c.conc, err = envInt("SCALE_CONCURRENCY", 6); err != nil {
		return c, err
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "pancap-scale-"); err != nil {
			return c, err
		}
	}
	return c, os.MkdirAll(c.dir, 0o755)
}

func run() error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	for _, bin := range []string{cfg.pancap, cfg.nginx} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%w: %v (nginx: apt-get install nginx-light)", errScale, err)
		}
	}
	rep := &report{Started: time.Now().UTC(), CPUs: runtime.NumCPU()}
	reps := make([]*replica, replicas)
	defer func() {
		for _, r := range reps {
			if r != nil {
				r.kill()
			}
		}
	}()
	for i := range reps {
		if reps[i], err = startReplica(cfg.pancap, cfg.dir, i, "", ""); err != nil {
			return err
		}
	}
	var failures []string
	for n := 1; n <= replicas; n++ {
		for _, way := range []string{"nginx", "round_robin"} {
			p, err := benchPoint(cfg, way, reps[:n])
			if err != nil {
				return err
			}
			if p.Failed > 0 {
				failures = append(failures, fmt.Sprintf("bench %s ×%d: %d failed", way, n, p.Failed))
			}
			rep.Throughput = append(rep.Throughput, p)
			fmt.Fprintf(os.Stderr, "scale-test: bench %-11s ×%d: %d requests, %d failed, %.2f req/s, %.1f tok/s, per replica %v\n",
				way, n, p.Requests, p.Failed, p.RPS, p.TPS, p.PerReplica)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, way := range []string{"nginx", "round_robin"} {
			f, err := faultRun(cfg, way, sig, reps)
			if err != nil {
				return err
			}
			if !f.OK {
				failures = append(failures, fmt.Sprintf("%s via %s: %s", f.Signal, way, f.Why))
			}
			rep.Faults = append(rep.Faults, f)
			fmt.Fprintf(os.Stderr, "scale-test: %s via %-11s: %d requests, %d failed %v, %d retries, %d in flight on the victim, victim %s\n",
				f.Signal, way, f.Requests, f.Failed, f.Codes, f.Retries, f.InFlight, f.Exit)
		}
	}
	rep.DurationS = time.Since(rep.Started).Seconds()
	printReport(os.Stdout, rep)
	if path := os.Getenv("SCALE_JSON"); path != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("%w: FAILED: %s", errScale, strings.Join(failures, "; "))
	}
	fmt.Println("scale-test: PASS")
	return nil
}

// target starts the way's front for the replicas: nginx, or nothing (the
// client's round_robin over the addresses). It returns the address to dial
// and a function that stops the front.
func target(cfg config, way string, reps []*replica) (string, func(), error) {
	addrs := make([]string, len(reps))
	for i, r := range reps {
		addrs[i] = r.addr
	}
	if way == "round_robin" {
		return strings.Join(addrs, ","), func() {}, nil
	}
	ng, err := startNginx(cfg.nginx, filepath.Join(cfg.dir, fmt.Sprintf("nginx-%d", len(reps))), addrs)
	if err != nil {
		return "", nil, err
	}
	return ng.addr, ng.stop, nil
}

// benchPoint runs `pancap bench` through the way against reps.
func benchPoint(cfg config, way string, reps []*replica) (point, error) {
	p := point{Way: way, Replicas: len(reps)}
	addr, stop, err := target(cfg, way, reps)
	if err != nil {
		return p, err
	}
	defer stop()
	before := servedAll(reps)
	out := filepath.Join(cfg.dir, fmt.Sprintf("bench-%s-%d.json", way, len(reps)))
	cmd := exec.Command(cfg.pancap, "bench", "--addr", addr, "--concurrency", strconv.Itoa(cfg.conc),
		"--num-requests", strconv.Itoa(cfg.requests), "--warmup", strconv.Itoa(cfg.conc),
		"--output-lens", strconv.Itoa(benchTokens), "--out", out, "--max-duration", "60s")
	cmd.Env = cleanEnv()
	if b, err := cmd.CombinedOutput(); err != nil {
		return p, fmt.Errorf("%w: pancap bench via %s: %v\n%s", errScale, way, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return p, err
	}
	var res struct {
		Runs []struct {
			Completed int     `json:"completed"`
			Failed    int     `json:"failed"`
			Duration  float64 `json:"duration_s"`
			RPS       float64 `json:"request_throughput_rps"`
			TPS       float64 `json:"output_token_throughput_tps"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &res); err != nil || len(res.Runs) != 1 {
		return p, fmt.Errorf("%w: %s: want one run: %v", errScale, out, err)
	}
	r := res.Runs[0]
	p.Requests, p.Failed, p.DurationS, p.RPS, p.TPS = r.Completed+r.Failed, r.Failed, r.Duration, r.RPS, r.TPS
	after := servedAll(reps)
	for i := range reps {
		p.PerReplica = append(p.PerReplica, after[i]-before[i])
	}
	return p, nil
}

// servedAll reads how many StreamCaption calls each replica has finished
// with OK.
func servedAll(reps []*replica) []int {
	out := make([]int, len(reps))
	for i, r := range reps {
		out[i], _ = r.metric("grpc_server_handled_total", map[string]string{"grpc_method": "StreamCaption", "grpc_code": "OK"})
	}
	return out
}

// attempts counts the client's call attempts (grpc reports one Begin per
// attempt, retries included).
type attempts struct{ n atomic.Int64 }

func (a *attempts) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attempts) HandleRPC(_ context.Context, s stats.RPCStats) {
	if b, ok := s.(*stats.Begin); ok && b.Client {
		a.n.Add(1)
	}
}
func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (a *attempts) HandleConn(context.Context, stats.ConnStats)                       {}

// faultRun sends sig to one replica once a third of a load through the way
// has finished, then checks what failed and restarts the replica.
func faultRun(cfg config, way string, sig syscall.Signal, reps []*replica) (fault, error) {
	f := fault{Way: way, Signal: "SIGTERM", Requests: faultRequests, Codes: map[string]int{}}
	if sig == syscall.SIGKILL {
		f.Signal = "SIGKILL"
	}
	addr, stop, err := target(cfg, way, reps)
	if err != nil {
		return f, err
	}
	defer stop()
	imgs, err := benchmarks.Synthetic([][2]int{{1000, 667}}, 7)
	if err != nil {
		return f, err
	}
	counter := &attempts{}
	c, err := client.Dial(addr, client.WithRetry(5, 100*time.Millisecond, time.Second),
		client.WithTimeout(2*time.Minute), client.WithDialOptions(grpc.WithStatsHandler(counter)))
	if err != nil {
		return f, err
	}
	defer c.Close()
	victim := reps[0]
	if sig == syscall.SIGKILL {
		victim = reps[1]
	}
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		wg         sync.WaitGroup
		third      = make(chan struct{})
		signalled  = make(chan struct{})
	)
	// The signal goes once a third of the load has finished and the victim
	// has calls in flight (or after 5 s of waiting for some).
	go func() {
		defer close(signalled)
		<-third
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if f.InFlight = victim.inFlight(); f.InFlight > 0 {
				break
			}
		}
		victim.cmd.Process.Signal(sig)
	}()
	req := &pb.CaptionRequest{Image: imgs[0].Data, IgnoreEos: true,
		MaxNewTokens: []int32{faultTokens, faultTokens, faultTokens, faultTokens}}
	for range cfg.conc {
		wg.Go(func() {
			for next.Add(1) <= faultRequests {
				err := chain(c, req)
				if err != nil {
					mu.Lock()
					f.Failed++
					f.Codes[status.Code(err).String()]++
					mu.Unlock()
				}
				if done.Add(1) == faultRequests/3 {
					close(third)
				}
			}
		})
	}
	wg.Wait()
	<-signalled
	f.Retries = counter.n.Load() - faultRequests
	f.Exit = victim.wait(drainTimeout + 10*time.Second)
	switch {
	case sig == syscall.SIGTERM && f.Failed > 0:
		f.Why = fmt.Sprintf("%d requests failed while a replica drained", f.Failed)
	case sig == syscall.SIGTERM && f.Exit != "exit 0":
		f.Why = "the drained replica ended with " + f.Exit
	case sig == syscall.SIGKILL && f.Failed > f.InFlight:
		f.Why = fmt.Sprintf("%d requests failed, more than the %d in flight on the killed replica", f.Failed, f.InFlight)
	}
	f.OK = f.Why == ""
	i := 0
	if victim == reps[1] {
		i = 1
	}
	reps[i], err = startReplica(cfg.pancap, cfg.dir, i, victim.addr, victim.metricsAddr)
	return f, err
}

// chain runs one StreamCaption to its final event.
func chain(c *client.Client, req *pb.CaptionRequest) error {
	for ev, err := range c.StreamCaption(context.Background(), req) {
		if err != nil {
			return err
		}
		if ev.GetFinal() != nil {
			return nil
		}
	}
	return fmt.Errorf("%w: the stream ended without its final event", errScale)
}

// cleanEnv is the environment without PANCAP_ variables, which would set
// the flags of the commands this test starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PANCAP_") {
			env = append(env, kv)
		}
	}
	return env
}

// printReport writes the markdown tables of the README.
func printReport(w io.Writer, r *report) {
	fmt.Fprintf(w, "\n## scale-test, %s, %d CPUs, %.0f s\n\n", r.Started.Format("2006-01-02 15:04 UTC"), r.CPUs, r.DurationS)
	fmt.Fprintln(w, "| way | replicas | requests | failed | req/s | output tok/s | served per replica |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	for _, p := range r.Throughput {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.2f | %.1f | %s |\n", p.Way, p.Replicas, p.Requests, p.Failed, p.RPS, p.TPS, joinInts(p.PerReplica))
	}
	fmt.Fprintln(w, "\n| signal | way | requests | failed | retries | in flight on the victim | victim | ok |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---|---|")
	for _, f := range r.Faults {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %s | %v |\n", f.Signal, f.Way, f.Requests, f.Failed, f.Retries, f.InFlight, f.Exit, f.OK)
	}
	fmt.Fprintln(w)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " / ")
}
