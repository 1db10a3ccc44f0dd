package tei

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestSplitItems(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  bool
	}{
		{"dense", `[[0.1,-0.2],[3e-5,4]]`, []string{`[0.1,-0.2]`, `[3e-5,4]`}, false},
		{"spaces", " [ [1, 2] ,\n[3] ] ", []string{`[1, 2]`, `[3]`}, false},
		{"empty list", `[]`, nil, false},
		{"empty item", `[[],[1]]`, []string{`[]`, `[1]`}, false},
		{"sparse", `[[{"index":1,"value":0.5}],[{"index":2,"value":1}]]`, []string{`[{"index":1,"value":0.5}]`, `[{"index":2,"value":1}]`}, false},
		{"nested", `[[[1],[2]],[[3]]]`, []string{`[[1],[2]]`, `[[3]]`}, false},
		{"strings with brackets", `[["a]\"[",1]]`, []string{`["a]\"[",1]`}, false},
		{"objects", `[{"a":[1,2]},{"b":"}"}]`, []string{`{"a":[1,2]}`, `{"b":"}"}`}, false},
		{"not a list", `{"error":"x"}`, nil, true},
		{"unterminated", `[[1,2],[3`, nil, true},
		{"trailing", `[[1]]x`, nil, true},
		{"missing comma", `[[1][2]]`, nil, true},
		{"mismatched", `[[{1]}]`, nil, true},
		{"empty body", ``, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitItems([]byte(tc.in), nil)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d items %q, want %q", len(got), got, tc.want)
			}
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Errorf("item %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestSplitItemsAgreesWithJSON checks the splitter against encoding/json on
// random dense and sparse answers: each item must be exactly the JSON of the
// value at that position.
func TestSplitItemsAgreesWithJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		var body []byte
		if n%2 == 0 {
			body = denseBody(r, r.IntN(5), r.IntN(40))
		} else {
			items := [][]SparseValue{}
			for range r.IntN(5) {
				var it []SparseValue
				for range r.IntN(4) {
					it = append(it, SparseValue{Index: r.Uint32N(30000), Value: r.Float32()})
				}
				items = append(items, it)
			}
			body, _ = json.Marshal(items)
		}
		var want []json.RawMessage
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatal(err)
		}
		got, err := SplitItems(body, nil)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d items, want %d", body, len(got), len(want))
		}
		for i := range got {
			if string(got[i]) != string(want[i]) {
				t.Fatalf("item %d = %s, want %s", i, got[i], want[i])
			}
		}
	}
}

func TestDecodeVector(t *testing.T) {
	v, err := DecodeVector([]byte(`[0.5, -1e-3,2]`))
	if err != nil || len(v) != 3 || v[0] != 0.5 || v[1] != -0.001 || v[2] != 2 {
		t.Fatalf("got %v, %v", v, err)
	}
	for _, bad := range []string{`[1,x]`, `[1,`, `{}`, `[1e99]`, `[1,,2]`} {
		if _, err := DecodeVector([]byte(bad)); err == nil {
			t.Errorf("DecodeVector(%s) succeeded", bad)
		}
	}
}

// denseBody writes n vectors of dim floats the way TEI does.
func denseBody(r *rand.Rand, n, dim int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		for j := range dim {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(float64(r.Float32()*2-1)/30, 'g', -1, 32))
		}
		b.WriteByte(']')
	}
	b.WriteByte(']')
	return []byte(b.String())
}

func FuzzSplitItems(f *testing.F) {
	for _, s := range []string{`[[0.1,-0.2],[3e-5,4]]`, `[]`, `[[{"index":1,"value":0.5}]]`, `[["a]\"["]]`, `[[1][2]]`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := SplitItems(body, nil)
		if err != nil {
			return
		}
		// Items are disjoint, in order, and each is a sub-slice of body.
		prev := 0
		for i, it := range items {
			off := strings.Index(string(body[prev:]), string(it))
			if off < 0 {
				t.Fatalf("item %d %q not found after offset %d", i, it, prev)
			}
			prev += off + len(it)
		}
		// Valid JSON lists must agree with encoding/json.
		var want []json.RawMessage
		if json.Unmarshal(body, &want) == nil && len(want) != len(items) {
			t.Fatalf("%d items, encoding/json sees %d", len(items), len(want))
		}
	})
}

func BenchmarkSplitItems(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 32} {
		body := denseBody(r, n, 1024)
		b.Run(fmt.Sprintf("%dx1024", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			dst := make([][]byte, 0, n)
			for b.Loop() {
				var err error
				if dst, err = SplitItems(body, dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
