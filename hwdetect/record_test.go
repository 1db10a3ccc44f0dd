package hwdetect

import (
	"context"
	"os"
	"testing"

	"github.com/jaypipes/ghw/pkg/snapshot"
)

// TestRecordSnapshot records this machine as a ghw snapshot, for adding a
// recorded machine to testdata:
//
//	HWDETECT_RECORD=$PWD/hwdetect/testdata/snapshots/NAME.tar.gz go test -run TestRecordSnapshot ./hwdetect
//
// It is skipped unless HWDETECT_RECORD names the file to write.
func TestRecordSnapshot(t *testing.T) {
	out := os.Getenv("HWDETECT_RECORD")
	if out == "" {
		t.Skip("set HWDETECT_RECORD=FILE.tar.gz to record this machine")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if err := snapshot.CloneTreeInto(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.PackFrom(ctx, out, dir); err != nil {
		t.Fatal(err)
	}
}
