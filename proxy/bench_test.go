package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/tei"
)

// cannedTEI is an upstream that answers /embed instantly with fixed 1024-d
// vectors, so benchmarks measure the proxy rather than the model.
func cannedTEI(b *testing.B) (string, func(n int) []byte) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 1))
	vec := make([]string, 64)
	for i := range vec {
		var sb strings.Builder
		sb.WriteByte('[')
		for j := range 1024 {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.FormatFloat(float64(r.Float32()*2-1)/30, 'g', -1, 32))
		}
		sb.WriteByte(']')
		vec[i] = sb.String()
	}
	body := func(n int) []byte {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = vec[i%len(vec)]
		}
		return []byte("[" + strings.Join(parts, ",") + "]")
	}
	bodies := map[int][]byte{}
	for n := 1; n <= 64; n++ {
		bodies[n] = body(n)
	}
	info := `{"model_id":"BAAI/bge-m3","model_sha":null,"model_dtype":"float16","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":8192,"max_batch_tokens":16384,"max_batch_requests":null,"max_client_batch_size":64,"auto_truncate":true,"tokenization_workers":1,"version":"1.9.3","sha":null,"docker_label":null}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/info" {
			w.Write([]byte(info))
			return
		}
		var req struct {
			Inputs []any `json:"inputs"`
		}
		rb, _ := io.ReadAll(r.Body)
		if err := jsonUnmarshal(rb, &req); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-compute-tokens", strconv.Itoa(8*len(req.Inputs)))
		w.Write(bodies[len(req.Inputs)])
	}))
	b.Cleanup(srv.Close)
	return srv.URL, body
}

func benchServer(b *testing.B, url string, cacheSize int) *Server {
	b.Helper()
	cfg := DefaultConfig()
	cfg.EmbedURLs = []string{url}
	cfg.CacheSize = cacheSize
	cfg.CacheBytes = 0
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}

// serveOnce runs one request through the handler in-process.
func serveOnce(b *testing.B, h http.Handler, body string) {
	req := httptest.NewRequest(http.MethodPost, "/embed", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so benchmarks
// measure the handler rather than a recorder's buffer.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	w.n += len(p)
	return len(p), nil
}

func batchBody(prefix string, n int) string {
	in := make([]string, n)
	for i := range in {
		in[i] = strconv.Quote(fmt.Sprintf("%s text %d", prefix, i))
	}
	return `{"inputs":[` + strings.Join(in, ",") + `]}`
}

// BenchmarkHit measures full cache hits through the HTTP handler.
func BenchmarkHit(b *testing.B) {
	url, _ := cannedTEI(b)
	srv := benchServer(b, url, 10000)
	h := srv.Handler()
	for _, n := range []int{1, 32} {
		body := batchBody("hit", n)
		if n == 1 {
			body = `{"inputs":"What is machine learning?"}`
		}
		serveOnce(b, h, body)
		b.Run(fmt.Sprintf("%dx1024", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, h, body)
			}
		})
	}
}

// BenchmarkMiss measures the miss path (cache off) through the handler and,
// for comparison, the bare client call to the same upstream. The difference
// divided by the batch size is the proxy's added cost per item.
func BenchmarkMiss(b *testing.B) {
	url, _ := cannedTEI(b)
	srv := benchServer(b, url, 0)
	h := srv.Handler()
	c, _ := tei.NewClient(url)
	for _, n := range []int{1, 32} {
		body := batchBody("miss", n)
		texts := make([]string, n)
		for i := range texts {
			texts[i] = fmt.Sprintf("miss text %d", i)
		}
		b.Run(fmt.Sprintf("proxy/%dx1024", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, h, body)
			}
		})
		b.Run(fmt.Sprintf("client/%dx1024", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Embed(context.Background(), tei.EmbedRequest{Inputs: tei.Texts(texts...)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPartialHit measures a 32-input request of which half hit.
func BenchmarkPartialHit(b *testing.B) {
	url, _ := cannedTEI(b)
	srv := benchServer(b, url, 4096)
	h := srv.Handler()
	serveOnce(b, h, batchBody("warm", 16))
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		in := make([]string, 32)
		for j := range 16 {
			in[j] = strconv.Quote(fmt.Sprintf("warm text %d", j))
			in[16+j] = strconv.Quote(fmt.Sprintf("new %d %d", i, j))
		}
		i++
		serveOnce(b, h, `{"inputs":[`+strings.Join(in, ",")+`]}`)
	}
}

// BenchmarkSplit measures 100 inputs split over an upstream limit of 64.
func BenchmarkSplit(b *testing.B) {
	url, _ := cannedTEI(b)
	srv := benchServer(b, url, 0)
	h := srv.Handler()
	body := batchBody("split", 100)
	b.ReportAllocs()
	for b.Loop() {
		serveOnce(b, h, body)
	}
}

// BenchmarkCacheMemory reports the heap held per cached 1024-d entry,
// relative to the entry's JSON bytes (target: at most 1.3).
func BenchmarkCacheMemory(b *testing.B) {
	_, body := cannedTEI(b)
	items, err := tei.SplitItems(body(64), nil)
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	{
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := newLRU[*entry](n, 0, newMetrics().cacheEvictions.WithLabelValues("embed"))
		jsonBytes := 0
		for i := range n {
			it := items[i%len(items)]
			c.add(textKey("p", strconv.Itoa(i)), &entry{json: append([]byte(nil), it...)})
			jsonBytes += len(it)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(c)
		for b.Loop() {
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(jsonBytes), "heap/json")
		b.ReportMetric(float64(jsonBytes)/n, "json-bytes/entry")
	}
}

// cannedTransport answers /info and /embed in-process, without sockets, so
// that a benchmark through it measures the proxy's own CPU.
type cannedTransport struct {
	info   []byte
	bodies map[int][]byte
}

func (c *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body := c.info
	h := http.Header{"Content-Type": {"application/json"}}
	if r.URL.Path != "/info" {
		var req struct {
			Inputs []json.RawMessage `json:"inputs"`
		}
		rb, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(rb, &req); err != nil {
			return nil, err
		}
		body = c.bodies[len(req.Inputs)]
		h.Set("x-compute-tokens", strconv.Itoa(8*len(req.Inputs)))
	}
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: r}, nil
}

// BenchmarkMissCPU is the miss path (cache off) through the handler with an
// in-process upstream: all of its time is the proxy's own work, per request
// and per 1024-d item (target: at most 15 µs per item).
func BenchmarkMissCPU(b *testing.B) {
	_, body := cannedTEI(b)
	ct := &cannedTransport{bodies: map[int][]byte{}}
	ct.info = []byte(`{"model_id":"BAAI/bge-m3","model_sha":null,"model_dtype":"float16","model_type":{"embedding":{"pooling":"cls"}},"max_concurrent_requests":512,"max_input_length":8192,"max_batch_tokens":16384,"max_batch_requests":null,"max_client_batch_size":64,"auto_truncate":true,"tokenization_workers":1,"version":"1.9.3","sha":null,"docker_label":null}`)
	for n := 1; n <= 64; n++ {
		ct.bodies[n] = body(n)
	}
	cfg := DefaultConfig()
	cfg.EmbedURLs = []string{"http://tei.invalid"}
	cfg.CacheSize = 0
	cfg.Transport = ct
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	h := srv.Handler()
	for _, n := range []int{1, 32} {
		reqBody := batchBody("cpu", n)
		b.Run(fmt.Sprintf("%dx1024", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, h, reqBody)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n)/1000, "µs/item")
		})
	}
}

// BenchmarkHitSocket is a full hit of 32 inputs over a loopback socket, so
// that the cost of writing the answer to a real connection is counted.
func BenchmarkHitSocket(b *testing.B) {
	url, _ := cannedTEI(b)
	srv := benchServer(b, url, 10000)
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	body := batchBody("socket", 32)
	post := func() {
		resp, err := http.Post(hs.URL+"/embed", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	post()
	b.ReportAllocs()
	for b.Loop() {
		post()
	}
}
