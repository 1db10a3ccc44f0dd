package plan_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tei-sidecar/tei-sidecar/hwdetect"
	"github.com/tei-sidecar/tei-sidecar/plan"
)

// layout is each plan's name and device, in order: "embed@cuda:0
// embed-1@cuda:1 rerank@cuda:2".
func layout(res plan.Result) string {
	var parts []string
	for _, p := range res.Plans {
		parts = append(parts, p.Name()+"@"+p.Device)
	}
	return strings.Join(parts, " ")
}

// a100s is a host with n A100 80GB.
func a100s(n int) hwdetect.Hardware {
	var gpus []hwdetect.GPU
	for i := range n {
		gpus = append(gpus, gpu(i, "A100", "8.0", 81920))
	}
	return host(gpus...)
}

func appleHost() hwdetect.Hardware {
	hw := host()
	hw.OS, hw.Arch = "darwin", "arm64"
	hw.Apple = &hwdetect.Apple{Chip: fact("Apple M3 Max"), UnifiedMemoryBytes: fact(int64(48) << 30)}
	return hw
}

// TestReplicaLayout: which TEIs a plan runs where, by default and as the
// replica settings ask.
func TestReplicaLayout(t *testing.T) {
	tests := []struct {
		name   string
		hw     hwdetect.Hardware
		s      plan.Settings
		want   string
		warned string // a result warning that must appear
	}{
		{"CPU: one each", host(), plan.Settings{}, "embed@cpu rerank@cpu", ""},
		{"Apple: one each", appleHost(), plan.Settings{}, "embed@mps rerank@mps", ""},
		{"one GPU: both share it", a100s(1), plan.Settings{}, "embed@cuda:0 rerank@cuda:0", ""},
		{"two GPUs: one each", a100s(2), plan.Settings{}, "embed@cuda:0 rerank@cuda:1", ""},
		{"four GPUs: three embedding replicas", a100s(4), plan.Settings{},
			"embed@cuda:0 embed-1@cuda:1 embed-2@cuda:2 rerank@cuda:3", ""},
		{"eight GPUs: seven embedding replicas", a100s(8), plan.Settings{},
			"embed@cuda:0 embed-1@cuda:1 embed-2@cuda:2 embed-3@cuda:3 embed-4@cuda:4 embed-5@cuda:5 embed-6@cuda:6 rerank@cuda:7", ""},
		{"no reranker: every GPU embeds", a100s(4), plan.Settings{RerankEnable: ptr(false)},
			"embed@cuda:0 embed-1@cuda:1 embed-2@cuda:2 embed-3@cuda:3", ""},
		{"the reranker on the CPU: every GPU embeds", a100s(2), plan.Settings{RerankDevice: "cpu"},
			"embed@cuda:0 embed-1@cuda:1 rerank@cpu", ""},
		{"two per GPU on one GPU", a100s(1), plan.Settings{ReplicasPerGPU: 2},
			"embed@cuda:0 embed-1@cuda:0 rerank@cuda:0 rerank-1@cuda:0", ""},
		{"two per GPU on three GPUs", a100s(3), plan.Settings{ReplicasPerGPU: 2},
			"embed@cuda:0 embed-1@cuda:1 embed-2@cuda:0 embed-3@cuda:1 rerank@cuda:2 rerank-1@cuda:2", ""},
		{"fewer embedding replicas than GPUs: the best ones", a100s(4), plan.Settings{EmbeddingReplicas: 2},
			"embed@cuda:0 embed-1@cuda:1 rerank@cuda:3", ""},
		{"two rerankers take two GPUs", a100s(4), plan.Settings{RerankReplicas: 2},
			"embed@cuda:0 embed-1@cuda:1 rerank@cuda:2 rerank-1@cuda:3", ""},
		{"more embedding replicas than free GPUs: the rest share the reranker's", a100s(2), plan.Settings{EmbeddingReplicas: 2},
			"embed@cuda:0 embed-1@cuda:1 rerank@cuda:1",
			"EMBEDDING_REPLICAS=2 does not fit on the 1 GPU the reranker leaves free at TEI_REPLICAS_PER_GPU=1: 1 embedding replica goes on the reranker's GPU 1, competing with it for memory and compute"},
		{"two per GPU fills the free GPUs first", a100s(2), plan.Settings{EmbeddingReplicas: 3, ReplicasPerGPU: 2},
			"embed@cuda:0 embed-1@cuda:0 embed-2@cuda:1 rerank@cuda:1 rerank-1@cuda:1", "EMBEDDING_REPLICAS=3 does not fit on the 1 GPU the reranker leaves free at TEI_REPLICAS_PER_GPU=2: 1 embedding replica goes on the reranker's GPU 1"},
		{"rerankers on every GPU: embedding shares them all", a100s(2), plan.Settings{RerankReplicas: 2},
			"embed@cuda:0 embed-1@cuda:1 rerank@cuda:0 rerank-1@cuda:1", ""},
		{"cuda:1 holds both to GPU 1", a100s(3), plan.Settings{Device: "cuda:1"}, "embed@cuda:1 rerank@cuda:1", ""},
		{"cuda:1 with two per GPU", a100s(3), plan.Settings{Device: "cuda:1", ReplicasPerGPU: 2, RerankEnable: ptr(false)},
			"embed@cuda:1 embed-1@cuda:1", ""},
		{"embedding forced to GPU 0: the reranker takes the best other", a100s(3), plan.Settings{Device: "cuda:0", RerankDevice: "auto"},
			"embed@cuda:0 rerank@cuda:1", ""},
		{"CPU replicas", host(), plan.Settings{EmbeddingReplicas: 2, RerankReplicas: 3}, "embed@cpu embed-1@cpu rerank@cpu rerank-1@cpu rerank-2@cpu", ""},
		{"Apple replicas", appleHost(), plan.Settings{EmbeddingReplicas: 2}, "embed@mps embed-1@mps rerank@mps", ""},
		{"per GPU without a GPU is ignored", host(), plan.Settings{ReplicasPerGPU: 4}, "embed@cpu rerank@cpu",
			"TEI_REPLICAS_PER_GPU=4 ignored: no model runs on a GPU"},
		{"a pinned GPU image without a detected GPU: GPU 0 assumed", host(), plan.Settings{Image: "registry.local/tei:89-custom", ReplicasPerGPU: 2, RerankEnable: ptr(false)},
			"embed@cuda:0 embed-1@cuda:0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustMake(t, tt.hw, tt.s)
			if got := layout(res); got != tt.want {
				t.Errorf("layout\n  %s\nwant\n  %s", got, tt.want)
			}
			if tt.warned != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, tt.warned) }) {
				t.Errorf("warnings %q lack %q", res.Warnings, tt.warned)
			}
			for i, p := range res.Plans {
				if p.Backend == plan.BackendDocker && p.Device != "cpu" && len(p.GPUIDs) != 1 {
					t.Errorf("%s has GPUs %v, want exactly one", p.Name(), p.GPUIDs)
				}
				if want := len(res.Replicas(p.Role)); !strings.HasPrefix(reasonOf(t, p, "replica").Choice, strconv.Itoa(p.Replica)+" of "+strconv.Itoa(want)) {
					t.Errorf("%s replica reason %q", p.Name(), reasonOf(t, p, "replica").Choice)
				}
				if i > 0 && res.Plans[i-1].Role == p.Role && res.Plans[i-1].Replica != p.Replica-1 {
					t.Errorf("%s follows %s: replicas out of order", p.Name(), res.Plans[i-1].Name())
				}
			}
		})
	}
}

// TestReplicaRefusals: replica counts the GPUs cannot hold are refused with
// what to change.
func TestReplicaRefusals(t *testing.T) {
	tests := []struct {
		name string
		hw   hwdetect.Hardware
		s    plan.Settings
		want string
	}{
		{"more embedding replicas than GPUs hold", a100s(2), plan.Settings{EmbeddingReplicas: 3},
			"EMBEDDING_REPLICAS=3 needs more TEIs than 2 GPUs hold at TEI_REPLICAS_PER_GPU=1 (2): lower EMBEDDING_REPLICAS, or raise TEI_REPLICAS_PER_GPU"},
		{"more rerankers than GPUs hold", a100s(2), plan.Settings{RerankReplicas: 5, ReplicasPerGPU: 2},
			"RERANK_REPLICAS=5 needs more TEIs than 2 GPUs hold at TEI_REPLICAS_PER_GPU=2 (4): lower RERANK_REPLICAS, or raise TEI_REPLICAS_PER_GPU"},
		{"replicas on a forced GPU", a100s(3), plan.Settings{Device: "cuda:1", EmbeddingReplicas: 2},
			"EMBEDDING_REPLICAS=2 puts 2 TEIs on GPU 1 (EMBEDDING_DEVICE=cuda:1), but TEI_REPLICAS_PER_GPU=1 allows 1 on a GPU: raise TEI_REPLICAS_PER_GPU, or set EMBEDDING_DEVICE=cuda to spread them over the GPUs"},
		{"rerankers on a forced GPU", a100s(3), plan.Settings{RerankDevice: "cuda:2", RerankReplicas: 3, ReplicasPerGPU: 2},
			"RERANK_REPLICAS=3 puts 3 TEIs on GPU 2 (RERANK_DEVICE=cuda:2), but TEI_REPLICAS_PER_GPU=2 allows 2 on a GPU: raise TEI_REPLICAS_PER_GPU, or set RERANK_DEVICE=cuda to spread them over the GPUs"},
		{"replicas on the GPU assumed for a pinned image", host(), plan.Settings{Image: "registry.local/tei:89-custom", EmbeddingReplicas: 2},
			"EMBEDDING_REPLICAS=2 puts 2 TEIs on GPU 0 (the GPU assumed for TEI_IMAGE), but TEI_REPLICAS_PER_GPU=1 allows 1 on a GPU: raise TEI_REPLICAS_PER_GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := plan.Make(tt.hw, tt.s); err == nil || err.Error() != tt.want {
				t.Errorf("Make() error = %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestReplicaBudgets: replicas sharing a GPU split its memory budget, and a
// replica alone on its GPU has all of it.
func TestReplicaBudgets(t *testing.T) {
	// 90 % of 81920 MiB less 1 GiB.
	const whole = 81920*90/100 - 1024
	tests := []struct {
		name    string
		hw      hwdetect.Hardware
		s       plan.Settings
		budgets []int64
		tokens  []int
	}{
		{"alone on their GPUs", a100s(2), plan.Settings{}, []int64{whole, whole}, []int{65536, 65536}},
		{"both models on one GPU", a100s(1), plan.Settings{}, []int64{whole / 2, whole / 2}, []int{65536, 65536}},
		{"four TEIs on one GPU", a100s(1), plan.Settings{ReplicasPerGPU: 2}, []int64{whole / 4, whole / 4, whole / 4, whole / 4}, []int{32768, 32768, 32768, 32768}},
		{"embedding replicas alone, rerankers doubled up", a100s(2), plan.Settings{ReplicasPerGPU: 2, EmbeddingReplicas: 1},
			[]int64{whole, whole / 2, whole / 2}, []int{65536, 65536, 65536}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustMake(t, tt.hw, tt.s)
			var budgets []int64
			var tokens []int
			for _, p := range res.Plans {
				budgets = append(budgets, p.MemoryBudgetMiB)
				tokens = append(tokens, p.MaxBatchTokens)
				i := slices.Index(p.Args, "--max-batch-tokens")
				if i < 0 || p.Args[i+1] != strconv.Itoa(p.MaxBatchTokens) {
					t.Errorf("%s args %q disagree with max_batch_tokens %d", p.Name(), p.Args, p.MaxBatchTokens)
				}
			}
			if !slices.Equal(budgets, tt.budgets) || !slices.Equal(tokens, tt.tokens) {
				t.Errorf("budgets %v tokens %v; want %v %v", budgets, tokens, tt.budgets, tt.tokens)
			}
		})
	}
	shared := mustMake(t, a100s(1), plan.Settings{ReplicasPerGPU: 2}).Plans[0]
	r := reasonOf(t, shared, "memory_budget")
	if want := "GPU 0's 81920 MiB (shared by 4 TEIs): 90 % of it less 1024 MiB for the CUDA context, split evenly between embed, embed-1, rerank, rerank-1"; r.Why != want {
		t.Errorf("budget reason %q\nwant %q", r.Why, want)
	}
}

// TestReplicaCPUShares: replicas of one role on the CPU split its cores
// (RAYON_NUM_THREADS, tokenization workers) and all TEIs split its memory;
// the two roles each keep every core, as a query calls them in turn.
func TestReplicaCPUShares(t *testing.T) {
	hw := host() // 8 cores, 32 GiB
	res := mustMake(t, hw, plan.Settings{EmbeddingReplicas: 2, EmbeddingModel: "BAAI/bge-small-en-v1.5"})
	const mem = 32 << 10 * 60 / 100
	for _, tc := range []struct {
		name           string
		threads        string
		workers        int
		budget         int64
		threadsWhyPart string
	}{
		{"embed", "4", 1, mem / 3, "4 of the 8 usable cores (from test), split between the 2 embedding model replicas"},
		{"embed-1", "4", 1, mem / 3, "split between the 2 embedding model replicas"},
		{"rerank", "8", 2, mem / 3, "the 8 usable cores (from test)"},
	} {
		i := slices.IndexFunc(res.Plans, func(p plan.Plan) bool { return p.Name() == tc.name })
		if i < 0 {
			t.Fatalf("no %s plan in %s", tc.name, layout(res))
		}
		p := res.Plans[i]
		if p.Env["RAYON_NUM_THREADS"] != tc.threads || p.TokenizationWorkers != tc.workers || p.MemoryBudgetMiB != tc.budget {
			t.Errorf("%s: RAYON_NUM_THREADS=%s, %d tokenization workers, %d MiB; want %s, %d, %d MiB",
				tc.name, p.Env["RAYON_NUM_THREADS"], p.TokenizationWorkers, p.MemoryBudgetMiB, tc.threads, tc.workers, tc.budget)
		}
		if why := reasonOf(t, p, "RAYON_NUM_THREADS").Why; !strings.Contains(why, tc.threadsWhyPart) {
			t.Errorf("%s: RAYON_NUM_THREADS reason %q lacks %q", tc.name, why, tc.threadsWhyPart)
		}
	}
}

// TestReplicaPorts: native routers share the host's network, so each
// replica gets the next port; containers each listen on the images' port.
func TestReplicaPorts(t *testing.T) {
	native := mustMake(t, appleHost(), plan.Settings{EmbeddingReplicas: 2, RerankReplicas: 2})
	var ports []int
	for _, p := range native.Plans {
		ports = append(ports, p.Port)
		if i := slices.Index(p.Args, "--port"); i < 0 || p.Args[i+1] != strconv.Itoa(p.Port) {
			t.Errorf("%s args %q, want --port %d", p.Name(), p.Args, p.Port)
		}
	}
	if want := []int{3000, 3001, 3002, 3003}; !slices.Equal(ports, want) {
		t.Errorf("native ports %v, want %v", ports, want)
	}
	for _, p := range mustMake(t, a100s(4), plan.Settings{}).Plans {
		if p.Port != 80 {
			t.Errorf("%s listens on %d, want the images' 80", p.Name(), p.Port)
		}
	}
}

// TestReplicaIdentity: each replica hashes apart, even two on one GPU with
// the same arguments; replica 0 hashes as a plan did before replicas; the
// result's accessors find a role's replicas.
func TestReplicaIdentity(t *testing.T) {
	res := mustMake(t, a100s(2), plan.Settings{ReplicasPerGPU: 2, EmbeddingReplicas: 4})
	seen := map[string]string{}
	for _, p := range res.Plans {
		if other, dup := seen[p.Hash()]; dup {
			t.Errorf("%s and %s share hash %s", p.Name(), other, p.Hash())
		}
		seen[p.Hash()] = p.Name()
	}
	reps := res.Replicas(plan.RoleEmbedding)
	if len(reps) != 4 || reps[2].Replica != 2 || reps[2].Name() != "embed-2" {
		t.Fatalf("Replicas(embedding) = %d plans: %s", len(reps), layout(res))
	}
	if first, ok := res.Plan(plan.RoleEmbedding); !ok || first.Replica != 0 || first.Hash() != reps[0].Hash() {
		t.Errorf("Plan(embedding) is not the first replica: %+v", first)
	}
	zero := reps[0]
	bumped := zero
	bumped.Replica = 1
	if zero.Hash() == bumped.Hash() {
		t.Error("the replica index does not change the hash")
	}
	if got := res.Replicas(plan.RoleRerank); len(got) != 2 || got[1].Name() != "rerank-1" {
		t.Errorf("Replicas(rerank) = %d plans", len(got))
	}
	if got := mustMake(t, a100s(1), plan.Settings{RerankEnable: ptr(false)}).Replicas(plan.RoleRerank); got != nil {
		t.Errorf("Replicas(rerank) without a reranker = %v", got)
	}
}

// TestEnvVarsWithMixedReplicas: an image or batch size is written back only
// when every replica of the role has it, since a written value pins them
// all on the next run.
func TestEnvVarsWithMixedReplicas(t *testing.T) {
	mixed := host(gpu(0, "A100", "8.0", 81920), gpu(1, "L4", "8.9", 23034), gpu(2, "L4", "8.9", 23034))
	res := mustMake(t, mixed, plan.Settings{})
	if got := layout(res); got != "embed@cuda:0 embed-1@cuda:1 rerank@cuda:2" {
		t.Fatalf("layout %s", got)
	}
	vars := res.EnvVars()
	if v := envValue(vars, "TEI_IMAGE"); v != "" {
		t.Errorf("TEI_IMAGE=%s written although the embedding replicas run 1.9.3 and 89-1.9.3", v)
	}
	if v := envValue(vars, "TEI_MAX_BATCH_TOKENS"); v != "" {
		t.Errorf("TEI_MAX_BATCH_TOKENS=%s written although the embedding replicas differ", v)
	}
	if v := envValue(vars, "TEI_RERANK_IMAGE"); v != plan.Registry+":89-1.9.3" {
		t.Errorf("TEI_RERANK_IMAGE=%q, want the reranker's one image", v)
	}
	header := strings.Join(res.EnvHeader(), "\n")
	if !strings.Contains(header, "embedding replica 1 BAAI/bge-m3 on cuda:1 with "+plan.Registry+":89-1.9.3") {
		t.Errorf("header does not list every replica:\n%s", header)
	}
}
