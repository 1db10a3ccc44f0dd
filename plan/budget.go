package plan

import (
	"fmt"
	"strings"
)

// The max-batch-tokens heuristic.
//
// TEI batches the inputs of concurrent requests up to --max-batch-tokens
// tokens, and on a GPU its warm-up runs one full batch of max-length inputs
// at start, so the value must fit in memory with the weights. We estimate a
// batch's peak memory as
//
//	weights + tokens × (16 × hidden × dtype bytes
//	                    + [no flash attention] L × heads × dtype bytes × 2)
//
// where L = min(tokens, model max length) is the longest sequence in the
// batch. The first term is a token's live activations across one layer
// (QKV, attention output, the 4×-wide feed-forward and copies: about 16
// hidden-widths, double what a forward pass strictly needs). The second is
// the attention score and softmax matrices, which only exist where TEI runs
// without flash attention: Turing (7.5), Metal and CPU; flash attention
// (compute capability 8.0 and newer) keeps them out of memory.
//
// The memory a model may use is its fair share of:
//
//	CUDA:  90 % of the GPU's memory − 1 GiB (CUDA context, cuBLAS workspace)
//	Metal: 70 % of unified memory − 4 GiB (macOS's GPU working-set limit, and
//	       room for the OS and apps)
//	CPU:   60 % of usable RAM (the cgroup limit when lower; room for the
//	       datastore and the plugin)
//
// divided by the number of TEIs on that memory: the two models sharing one
// GPU, replicas sharing it (TEI_REPLICAS_PER_GPU), or every TEI on the CPU.
// Each replica on its own GPU gets that GPU's whole budget. The plan takes the largest
// power of two from a ceiling down to 512 whose estimate fits. The ceiling
// keeps one batch's latency, which a query may wait behind, near TEI's
// default: 16384 on CPU, Metal and GPUs whose share is under 16 GiB; 32768
// for a share of 16–32 GiB; 65536 above (such GPUs are also the fastest).
// Finally it is never below the longest input the user wants
// (EMBEDDING_MAX_LEN capped at the model's), with a warning when memory
// says less.

const (
	gpuUsablePercent   = 90
	gpuReserveMiB      = 1024
	appleUsablePercent = 70
	appleReserveMiB    = 4096
	cpuUsablePercent   = 60
	// activationWidths is a token's live activations, in hidden widths.
	activationWidths = 16
	minBatchTokens   = 512
	// teiDefaultBatchTokens is TEI's own --max-batch-tokens default.
	teiDefaultBatchTokens = 16384
)

// budget is what sizing one model's batch needs.
type budget struct {
	model Model
	// shareMiB is the memory this model may use; 0 when unknown.
	shareMiB   int64
	dtypeBytes int
	// quadratic is true where attention scores are materialised.
	quadratic bool
	ceiling   int
	// floor is the longest input the user wants.
	floor int
	// where names the memory for reasons ("GPU 0's 81559 MiB").
	where string
	// rule says how the usable part of that memory is reckoned.
	rule string
	// sharers name the TEIs splitting it, when more than one.
	sharers []string
}

// choice is the budget as a reason's choice.
func (b budget) choice() string {
	if b.shareMiB <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d MiB", b.shareMiB)
}

// why explains the budget in one line.
func (b budget) why() string {
	if b.shareMiB <= 0 && b.rule == "" {
		return b.where + " unknown: batches are sized to TEI's default"
	}
	why := b.where + ": " + b.rule
	switch {
	case b.shareMiB <= 0:
		why += ", which leaves nothing"
	case len(b.sharers) > 1:
		why += fmt.Sprintf(", split evenly between %s", strings.Join(b.sharers, ", "))
	default:
		why += ", all for this TEI"
	}
	return why
}

// estimateMiB is the peak memory of a batch of tokens.
func (b budget) estimateMiB(tokens int) int64 {
	longest := min(tokens, b.model.MaxLen)
	perToken := int64(activationWidths * b.model.Hidden * b.dtypeBytes)
	if b.quadratic {
		perToken += int64(longest) * int64(b.model.Heads) * int64(b.dtypeBytes) * 2
	}
	return b.model.weightsMiB(b.dtypeBytes) + int64(tokens)*perToken/(1<<20)
}

// size returns max-batch-tokens, why, and a warning when memory is short.
func (b budget) size() (tokens int, why, warning string) {
	if b.shareMiB <= 0 {
		tokens = max(teiDefaultBatchTokens, b.floor)
		return tokens, fmt.Sprintf("%s unknown: TEI's default %d", b.where, teiDefaultBatchTokens), ""
	}
	fits := 0
	for t := b.ceiling; t >= minBatchTokens; t /= 2 {
		if b.estimateMiB(t) <= b.shareMiB {
			fits = t
			break
		}
	}
	if fits >= b.floor {
		why = fmt.Sprintf("largest power of two up to %d whose estimated peak (%d MiB with weights) fits this model's %d MiB share of %s",
			b.ceiling, b.estimateMiB(fits), b.shareMiB, b.where)
		if fits == b.ceiling {
			why = fmt.Sprintf("the ceiling for this memory class; its estimated peak (%d MiB with weights) fits this model's %d MiB share of %s",
				b.estimateMiB(fits), b.shareMiB, b.where)
		}
		return fits, why, ""
	}
	why = fmt.Sprintf("raised to the longest input wanted (%d tokens)", b.floor)
	if fits == 0 {
		warning = fmt.Sprintf("%s may not even hold %s's weights (%d MiB share); TEI may run out of memory: free memory, disable the reranker (RERANK_ENABLE=false) or choose a smaller model",
			b.where, b.model.ID, b.shareMiB)
	} else {
		warning = fmt.Sprintf("memory is tight: %s fits about %d tokens per batch for %s, but %d-token inputs need %d; if TEI runs out of memory, lower EMBEDDING_MAX_LEN or set RERANK_ENABLE=false",
			b.where, fits, b.model.ID, b.floor, b.floor)
	}
	return b.floor, why, warning
}

// gpuCeiling is the batch-token ceiling for a GPU share.
func gpuCeiling(shareMiB int64) int {
	switch {
	case shareMiB >= 32*1024:
		return 65536
	case shareMiB >= 16*1024:
		return 32768
	default:
		return 16384
	}
}
