package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// spinnerFrames are drawn in turn while waiting.
var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// progress is a one-line spinner with a status message on a terminal. On
// anything that is not a terminal it draws nothing, so piped output stays
// clean.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	msg   string // shown while non-empty
	frame int
	stop  chan struct{}
	done  chan struct{}
}

// newProgress starts a spinner on w when w is a terminal; otherwise it
// returns a progress that draws nothing.
func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		return p
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.loop()
	return p
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.frame++
			p.draw()
			p.mu.Unlock()
		}
	}
}

// draw repaints the line; the caller holds mu.
func (p *progress) draw() {
	if p.msg != "" {
		fmt.Fprintf(p.w, "\r\033[K%s %s", spinnerFrames[p.frame%len(spinnerFrames)], p.msg)
	}
}

// Set shows msg next to the spinner.
func (p *progress) Set(format string, args ...any) {
	if p.stop == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msg = fmt.Sprintf(format, args...)
	p.draw()
}

// Clear erases the line, before other output is written.
func (p *progress) Clear() {
	if p.stop == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.msg != "" {
		fmt.Fprint(p.w, "\r\033[K")
		p.msg = ""
	}
}

// Close erases the line and stops the spinner.
func (p *progress) Close() {
	if p.stop == nil {
		return
	}
	p.Clear()
	close(p.stop)
	<-p.done
}
