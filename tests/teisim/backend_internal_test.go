package teisim

import (
	"context"
	"testing"
)

// TestNextChargesPadding checks how a batch is cut and charged: a padded
// (CPU) backend counts every entry at the longest entry's length, against
// the token budget and in the batch's cost; an unpadded one sums them.
func TestNextChargesPadding(t *testing.T) {
	tests := []struct {
		name           string
		padded         bool
		maxTokens      int
		maxRequests    int
		entries, taken int
		cost           int
	}{
		{name: "unpadded sums", maxTokens: 100, entries: 3, taken: 3, cost: 3 + 10 + 5},
		{name: "padded pays the longest", padded: true, maxTokens: 100, entries: 3, taken: 3, cost: 10 * 3},
		{name: "padding counts against the budget", padded: true, maxTokens: 20, entries: 3, taken: 2, cost: 10 * 2},
		{name: "unpadded budget", maxTokens: 20, entries: 3, taken: 3, cost: 18},
		{name: "entry cap", maxTokens: 100, maxRequests: 2, entries: 3, taken: 2, cost: 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backend{
				maxTokens: tt.maxTokens, maxRequests: tt.maxRequests, padded: tt.padded,
				metrics: newMetrics(512, tt.maxTokens), wake: make(chan struct{}, 1),
			}
			for _, n := range []int{3, 10, 5}[:tt.entries] {
				b.queue = append(b.queue, &entry{item: item{tokens: n}, ctx: context.Background(), done: make(chan struct{})})
			}
			_, batch, cost := b.next()
			if len(batch) != tt.taken || cost != tt.cost {
				t.Errorf("took %d entries costing %d tokens, want %d costing %d", len(batch), cost, tt.taken, tt.cost)
			}
		})
	}
}
