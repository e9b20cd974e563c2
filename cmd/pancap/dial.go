package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pancap-serve/pancap/client"
)

// dialFlags are the flags of the commands that talk to a running server.
type dialFlags struct {
	addr    string
	token   string
	tls     bool
	tlsCA   string
	timeout time.Duration
}

// register adds the flags to fs.
func (d *dialFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&d.addr, "addr", "127.0.0.1:50051", "address of the running server")
	fs.StringVar(&d.token, "auth-token", "", "bearer token for the server")
	fs.BoolVar(&d.tls, "tls", false, "connect over TLS (system roots unless --tls-ca)")
	fs.StringVar(&d.tlsCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate (implies --tls)")
	fs.DurationVar(&d.timeout, "timeout", client.DefaultTimeout, "deadline of each call")
}

// dial connects to the server; extra options come after the flags'.
func (d *dialFlags) dial(extra ...client.Option) (*client.Client, error) {
	opts := []client.Option{client.WithTimeout(d.timeout)}
	if d.token != "" {
		opts = append(opts, client.WithToken(d.token))
	}
	if d.tls || d.tlsCA != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if d.tlsCA != "" {
			pem, err := os.ReadFile(d.tlsCA)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no PEM certificate", d.tlsCA)
			}
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	return client.Dial(d.addr, append(opts, extra...)...)
}

// errNoResult is returned when a stream ends without its final event.
var errNoResult = errors.New("the stream ended without a result")

// callError is a failed call; it prints as "CODE: message", the canonical
// gRPC code name first.
type callError struct {
	code codes.Code
	msg  string
}

func (e *callError) Error() string { return codeName(e.code.String()) + ": " + e.msg }

// rpcError turns a gRPC status error into a callError; others pass.
func rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return &callError{code: st.Code(), msg: st.Message()}
}

// codeName turns grpc-go's code name ("InvalidArgument") into the canonical
// one ("INVALID_ARGUMENT").
func codeName(s string) string {
	if s == "Canceled" {
		return "CANCELLED" // the one canonical name spelt differently
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && !(s[i-1] >= 'A' && s[i-1] <= 'Z') {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
