package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/pancap-serve/pancap/internal/testsupport"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// peakRSS is the VmHWM of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// png16 encodes a w×h 16-bit RGBA PNG of a few flat bands: a few KB on the
// wire that decode into 8 bytes a pixel.
func png16(t *testing.T, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := range h {
		c := color.NRGBA64{R: uint16(y * 40), G: 0x8000, B: uint16(y * 7), A: 0xffff}
		for x := range w {
			m.SetNRGBA64(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodeFloodBoundedMemory floods a real `pancap serve` with 100
// concurrent requests whose images each decode into ~18 MB (16-bit
// 1500×1500 PNGs of a few KB): all are served, and the server's peak RSS
// grows by less than twice --decode-budget-bytes (decoding, the batch's
// activations and gRPC's buffers together), where decoding them all at once
// would take 1.8 GB. Without the collection after each large decode it grew
// by 364 MiB for a 64 MiB budget; with it, 43 MiB.
//
// PANCAP_FLOOD_IMAGE=FILE floods with that image instead and
// PANCAP_FLOOD_BUDGET=BYTES sets the budget: the measurement of
// docs/reliability.md with the worst images the limits accept.
func TestDecodeFloodBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and floods the binary")
	}
	const flood = 100
	budget := 64 << 20
	img := png16(t, 1500, 1500)
	if path := os.Getenv("PANCAP_FLOOD_IMAGE"); path != "" {
		var err error
		if img, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		if budget, err = strconv.Atoi(os.Getenv("PANCAP_FLOOD_BUDGET")); err != nil {
			t.Fatalf("PANCAP_FLOOD_BUDGET: %v", err)
		}
	}
	bin := buildPancap(t)
	addr := testsupport.FreeAddr(t)
	var logs testsupport.SyncBuffer
	cmd := exec.Command(bin, "serve", "--addr", addr, "--max-queue", "128",
		"--decode-budget-bytes", strconv.Itoa(budget), "--log-level", "warn")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health, client := healthpb.NewHealthClient(conn), pb.NewCaptionerClient(conn)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && r.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never SERVING: %v\n%s", err, logs.String())
		}
	}
	caption := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
		defer cancel()
		_, err := client.Caption(ctx, &pb.CaptionRequest{Image: img, Stages: 1, MaxNewTokens: []int32{1}})
		return err
	}
	if err := caption(); err != nil { // warm: the model's own memory counts as the baseline
		t.Fatal(err)
	}
	base := peakRSS(t, cmd.Process.Pid)

	var wg sync.WaitGroup
	errs := make(chan error, flood)
	start := time.Now()
	for range flood {
		wg.Go(func() { errs <- caption() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a flooded request failed: %v", err)
		}
	}
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("%d requests of %d-byte images in %v: peak RSS %d MiB, %d MiB over the warm server's %d MiB (decode budget %d MiB)",
		flood, len(img), time.Since(start).Round(time.Millisecond), peak>>20, (peak-base)>>20, base>>20, budget>>20)
	if grew := peak - base; grew > 2*int64(budget) {
		t.Errorf("peak RSS grew by %d MiB under the flood, more than twice the %d MiB decode budget", grew>>20, budget>>20)
	}
}
