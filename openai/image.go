package openai

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// decodeDataURI decodes a base64 data: URI of an image
// ("data:image/png;base64,iVBOR…"). The caller bounds its size.
func decodeDataURI(uri string) ([]byte, error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(uri, "data:"), ",")
	if !ok {
		return nil, errors.New("a data: URI needs a comma before its data")
	}
	media, enc, _ := strings.Cut(meta, ";")
	if !strings.EqualFold(enc, "base64") && !strings.HasSuffix(strings.ToLower(enc), ";base64") {
		return nil, errors.New("a data: URI of an image must be base64 (data:image/png;base64,…)")
	}
	if !strings.HasPrefix(strings.ToLower(media), "image/") {
		return nil, fmt.Errorf("a data: URI must carry an image/* media type, got %q", media)
	}
	enc64 := base64.StdEncoding
	if len(data)%4 != 0 {
		enc64 = base64.RawStdEncoding
	}
	img, err := enc64.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("bad base64 in the data: URI: %w", err)
	}
	if len(img) == 0 {
		return nil, errors.New("the data: URI holds no bytes")
	}
	return img, nil
}

// maxRedirects bounds the redirects a remote image may take.
const maxRedirects = 3

// fetcher downloads remote images from an allow-list of hosts, over HTTPS
// only. A server that fetched any URL would let its clients reach what only
// it can reach (SSRF): without an allow-list there is no fetcher at all.
type fetcher struct {
	hosts  map[string]bool // lower-case host names (no port)
	client *http.Client
	limit  int // most bytes of an image
}

// newFetcher returns a fetcher for hosts through client (nil: one with
// timeout), refusing images over limit bytes; nil when hosts is empty.
func newFetcher(hosts []string, client *http.Client, timeout time.Duration, limit int) *fetcher {
	if len(hosts) == 0 {
		return nil
	}
	f := &fetcher{hosts: map[string]bool{}, limit: limit}
	for _, h := range hosts {
		f.hosts[strings.ToLower(strings.TrimSpace(h))] = true
	}
	c := http.Client{Timeout: timeout}
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		return f.allowed(req.URL)
	}
	f.client = &c
	return f
}

// allowed refuses a URL that is not HTTPS to an allowed host.
func (f *fetcher) allowed(u *url.URL) error {
	switch {
	case u.Scheme != "https":
		return fmt.Errorf("only https image URLs are fetched, got %q", u.Scheme)
	case u.User != nil:
		return errors.New("image URLs must not carry credentials")
	case !f.hosts[strings.ToLower(u.Hostname())]:
		return fmt.Errorf("the host %q is not in --http-image-url-hosts", u.Hostname())
	}
	return nil
}

// fetch downloads the image at raw.
func (f *fetcher) fetch(ctx context.Context, raw string) ([]byte, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad image URL: %w", err)
	}
	if err := f.allowed(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the image: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the image: %s", resp.Status)
	}
	img, err := io.ReadAll(io.LimitReader(resp.Body, int64(f.limit)+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("fetching the image: %w", err)
	case len(img) > f.limit:
		return nil, fmt.Errorf("the image exceeds %d bytes (--max-image-bytes)", f.limit)
	}
	return img, nil
}
