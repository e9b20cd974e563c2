package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// replica is one running `pancap serve`.
type replica struct {
	addr, metricsAddr string
	cmd               *exec.Cmd
	done              chan struct{}
	waitErr           error
}

// loopbackPorts returns n distinct loopback addresses that were free a
// moment ago (all held open together, so no two are the same).
func loopbackPorts(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// startReplica starts replica i of the embedded model on addr and
// metricsAddr (two free ports when addr is empty) and waits until it
// serves.
func startReplica(bin, dir string, i int, addr, metricsAddr string) (*replica, error) {
	if addr == "" {
		ports, err := loopbackPorts(2)
		if err != nil {
			return nil, err
		}
		addr, metricsAddr = ports[0], ports[1]
	}
	log, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("replica-%d.log", i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	r := &replica{addr: addr, metricsAddr: metricsAddr, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", metricsAddr,
		"--drain-timeout", drainTimeout.String(), "--log-level", "warn")
	r.cmd.Env, r.cmd.Stdout, r.cmd.Stderr = cleanEnv(), log, log
	if err := r.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		log.Close()
		close(r.done)
	}()
	health := exec.Command(bin, "health", "--addr", addr, "--wait", "60s")
	health.Env = cleanEnv()
	if out, err := health.CombinedOutput(); err != nil {
		r.kill()
		return nil, fmt.Errorf("%w: replica %d on %s never served: %v %s", errScale, i, addr, err, out)
	}
	return r, nil
}

// wait waits for the replica to end and says how it ended.
func (r *replica) wait(within time.Duration) string {
	select {
	case <-r.done:
	case <-time.After(within):
		r.kill()
		return fmt.Sprintf("still running %v after the signal (killed)", within)
	}
	if r.waitErr == nil {
		return "exit 0"
	}
	return r.waitErr.Error()
}

// kill ends the replica if it still runs.
func (r *replica) kill() {
	select {
	case <-r.done:
	default:
		r.cmd.Process.Kill()
		<-r.done
	}
}

// metric sums the samples of one gauge, counter or histogram (its count)
// on the replica's /metrics, over the series whose labels include every
// label of match.
func (r *replica) metric(name string, match map[string]string) (int, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + r.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		matched := 0
		for _, l := range m.GetLabel() {
			if v, ok := match[l.GetName()]; ok && v == l.GetValue() {
				matched++
			}
		}
		if matched == len(match) {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return int(sum), nil
}

// inFlight is the StreamCaption calls the replica's gRPC server has started
// and not finished (queued, running, or still being decoded).
func (r *replica) inFlight() int {
	method := map[string]string{"grpc_method": "StreamCaption"}
	started, _ := r.metric("grpc_server_started_total", method)
	handled, _ := r.metric("grpc_server_handled_total", method)
	return started - handled
}

// nginx is a running nginx in front of the replicas.
type nginx struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// nginxConf is the whole configuration: one worker, HTTP/2 cleartext on
// loopback, grpc_pass to the upstream of replicas. A call whose replica
// refuses the connection (it drains or is gone) goes to the next one; a
// call already sent is not resent by nginx (the client retries it).
var nginxConf = template.Must(template.New("nginx").Parse(`daemon off;
master_process on;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    upstream pancap {
{{- range .Upstreams}}
        server {{.}} max_fails=1 fail_timeout=5s;
{{- end}}
        keepalive 32;
    }
    server {
        listen {{.Addr}} http2;
        client_max_body_size 64m;
        location / {
            grpc_pass grpc://pancap;
            grpc_next_upstream error timeout;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }
    }
}
`))

// startNginx writes the configuration into dir and starts nginx on a free
// loopback port.
func startNginx(bin, dir string, upstreams []string) (*nginx, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := loopbackPorts(1)
	if err != nil {
		return nil, err
	}
	addr := ports[0]
	conf := filepath.Join(dir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		return nil, err
	}
	err = nginxConf.Execute(f, struct {
		Dir, Addr string
		Upstreams []string
	}{dir, addr, upstreams})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	n := &nginx{addr: addr, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("%w: nginx exited at start: %s", errScale, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return n, nil
		}
	}
	n.stop()
	return nil, fmt.Errorf("%w: nginx did not listen on %s", errScale, addr)
}

// stop ends nginx (SIGQUIT: a graceful stop) and waits for it.
func (n *nginx) stop() {
	n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}
