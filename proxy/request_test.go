package proxy

import (
	"errors"
	"github.com/go-json-experiment/json/jsontext"
	"testing"
	"unicode/utf8"
)

func TestParseInputs(t *testing.T) {
	tests := []struct {
		raw    string
		texts  []string
		ids    [][]uint32
		status int
	}{
		{`"a"`, []string{"a"}, nil, 0},
		{`["a","b"]`, []string{"a", "b"}, nil, 0},
		{`[1,2,3]`, nil, [][]uint32{{1, 2, 3}}, 0},
		{`["a",[4,5]]`, []string{"a", ""}, [][]uint32{nil, {4, 5}}, 0},
		{`[[1],[2]]`, []string{"", ""}, [][]uint32{{1}, {2}}, 0},
		{`[]`, nil, nil, 400},
		{`""`, nil, nil, 400},
		{`[[]]`, nil, nil, 400},
		{`42`, nil, nil, 422},
		{`null`, nil, nil, 422},
		{`[null]`, nil, nil, 422},
		{`[1,"a"]`, nil, nil, 422},
		{`[-1]`, nil, nil, 422},
		{`[4294967296]`, nil, nil, 422},
		{``, nil, nil, 422},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			in, err := parseInputs(jsontext.Value(tc.raw), "inputs")
			if tc.status != 0 {
				var re *requestError
				if !errors.As(err, &re) || re.status != tc.status {
					t.Fatalf("got %v, want status %d", err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := max(len(tc.texts), len(tc.ids))
			if len(in) != n {
				t.Fatalf("%d inputs, want %d", len(in), n)
			}
			for i := range in {
				if tc.texts != nil && in[i].Text != tc.texts[i] {
					t.Errorf("input %d text %q", i, in[i].Text)
				}
				if tc.ids != nil && tc.ids[i] != nil && len(in[i].IDs) != len(tc.ids[i]) {
					t.Errorf("input %d ids %v", i, in[i].IDs)
				}
			}
		})
	}
}

// FuzzDecodeEmbedRequest feeds arbitrary bodies to the /embed decoder: it
// must never panic, and whatever it accepts must be non-empty valid input.
func FuzzDecodeEmbedRequest(f *testing.F) {
	for _, s := range []string{`{"inputs":"a"}`, `{"inputs":["a",[1,2]]}`, `{"inputs":[1,2]}`, `{"inputs":[]}`,
		`{"inputs":"a","truncation_direction":"left","dimensions":3}`, `{`, `[]`, `{"inputs":[[[1]]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req teiEmbedRequest
		if decodeBody(body, &req) != nil {
			return
		}
		in, err := parseInputs(req.Inputs, "inputs")
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status < 400 || re.status > 499 {
				t.Fatalf("error %v is not a 4xx requestError", err)
			}
			return
		}
		if len(in) == 0 {
			t.Fatal("accepted no inputs")
		}
		for _, x := range in {
			if x.IDs == nil && x.Text == "" {
				t.Fatal("accepted an empty text")
			}
			if x.IDs == nil && utf8.Valid(body) && !utf8.ValidString(x.Text) {
				t.Fatal("invalid UTF-8 from valid body")
			}
		}
	})
}

// FuzzDecodeOpenAIRequest does the same for /v1/embeddings bodies.
func FuzzDecodeOpenAIRequest(f *testing.F) {
	for _, s := range []string{`{"input":"a","model":"m"}`, `{"input":[[1,2],[3]],"model":"m","encoding_format":"base64"}`, `{"input":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req openAIRequest
		if decodeBody(body, &req) != nil {
			return
		}
		_, _ = parseInputs(req.Input, "input")
	})
}
