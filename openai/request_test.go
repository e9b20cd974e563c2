package openai

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseChat: any body is a request or an error in OpenAI's shape (400,
// 404 or 413), never a panic, and a parsed request is self-consistent.
func FuzzParseChat(f *testing.F) {
	f.Add(`{"model":"pancapchain","messages":[{"role":"user","content":"hi"}]}`)
	f.Add(`{"model":"pancapchain","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"text","text":"x"}]}],"stop":["a"],"max_tokens":3,"seed":-4,"pancap":{"stages":2}}`)
	f.Add(`{"model":"pancapchain","n":2}`)
	f.Add(`{"messages":null,"tools":[],"logit_bias":{}}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := parseChat(strings.NewReader(body), 4096)
		if err != nil {
			if r != nil || (err.status != 400 && err.status != 404 && err.status != 413) || err.message == "" {
				t.Fatalf("request %+v, error %+v", r, err)
			}
			return
		}
		if r.model != ModelID || (r.text == "" && r.image == nil && r.imageURL == "") || (r.options.IncludeUsage && !r.stream) {
			t.Fatalf("inconsistent request %+v", r)
		}
	})
}

// FuzzDecodeDataURI: any URI decodes to a non-empty image or an error.
func FuzzDecodeDataURI(f *testing.F) {
	f.Add("data:image/png;base64,iVBORw0KGgo=")
	f.Add("data:image/jpeg;name=x;base64,/9j/")
	f.Add("data:text/plain,hello")
	f.Add("data:image/png;base64")
	f.Fuzz(func(t *testing.T, uri string) {
		img, err := decodeDataURI(uri)
		if (err == nil) == (len(img) == 0) {
			t.Fatalf("image %d bytes, error %v", len(img), err)
		}
	})
}

func TestDecodeDataURI(t *testing.T) {
	want := []byte("\x89PNG\r\n\x1a\n")
	for _, uri := range []string{
		"data:image/png;base64," + base64.StdEncoding.EncodeToString(want),
		"data:IMAGE/PNG;BASE64," + base64.RawStdEncoding.EncodeToString(want),
		"data:image/png;charset=binary;base64," + base64.StdEncoding.EncodeToString(want),
	} {
		if got, err := decodeDataURI(uri); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q %v", uri, got, err)
		}
	}
	for _, uri := range []string{"data:image/png,rawbytes", "data:text/plain;base64,aGk=", "data:image/png;base64,@@@@", "data:image/png;base64,", "data:"} {
		if _, err := decodeDataURI(uri); err == nil {
			t.Errorf("%s: accepted", uri)
		}
	}
}

// TestFetcher checks the allow-list, the scheme, redirects and the size
// limit of remote image URLs.
func TestFetcher(t *testing.T) {
	img := pngBytes(t, 4, 4)
	var ts *httptest.Server
	ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/img.png":
			w.Write(img)
		case "/elsewhere":
			http.Redirect(w, r, "https://localhost:1/img.png", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, ts.URL+"/loop", http.StatusFound)
		case "/big":
			w.Write(make([]byte, 2000))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	if newFetcher(nil, nil, time.Second, 1000) != nil {
		t.Fatal("a fetcher without an allow-list")
	}
	f := newFetcher([]string{" " + strings.ToUpper(u.Hostname()) + " "}, ts.Client(), time.Second, 1000)
	ctx := context.Background()
	if got, err := f.fetch(ctx, ts.URL+"/img.png"); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("allowed fetch: %d bytes, %v", len(got), err)
	}
	for path, want := range map[string]string{
		"http://" + u.Host + "/img.png":              "only https",
		"https://user:pw@" + u.Host + "/img.png":     "credentials",
		"https://localhost:" + u.Port() + "/img.png": "not in --http-image-url-hosts",
		ts.URL + "/elsewhere":                        "not in --http-image-url-hosts",
		ts.URL + "/loop":                             "redirects",
		ts.URL + "/big":                              "exceeds 1000 bytes",
		ts.URL + "/missing":                          "404",
		"https://" + u.Host + "/%zz":                 "bad image URL",
	} {
		if _, err := f.fetch(ctx, path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", path, err, want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.fetch(cctx, ts.URL+"/img.png"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled fetch: %v", err)
	}
}
