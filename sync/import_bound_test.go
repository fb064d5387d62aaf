package sync

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/sync/bundle"
	"github.com/sublog/sublog/sync/proto"
)

// junk is an endless stream of one byte that counts what is read from it.
type junk struct {
	b    byte
	read int64
	max  int64
}

func (j *junk) Read(p []byte) (int, error) {
	if j.read >= j.max {
		return 0, io.EOF
	}
	n := min(int64(len(p)), j.max-j.read)
	for i := range p[:n] {
		p[i] = j.b
	}
	j.read += n
	return int(n), nil
}

// A gigabyte of junk is refused at once, having read one buffer of it:
// as bare junk ("bad magic"), and behind a valid magic (the first record's
// length is over the frame limit).
func TestImportRefusesGigabyteOfJunkAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      func(j *junk) io.Reader
		want   error
		detail string
	}{
		{"junk", func(j *junk) io.Reader { return j }, bundle.ErrFormat, "bad magic"},
		{"magic then junk", func(j *junk) io.Reader { return io.MultiReader(strings.NewReader(bundle.MagicPlain), j) }, bundle.ErrMalformed, "record"},
	} {
		j := &junk{b: 0xff, max: 1 << 30}
		_, _, err := Import(tc.r(j), NewMemStore(testCaps), ImportOptions{SpoolDir: t.TempDir()})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.detail) {
			t.Fatalf("%s: %v, want %v (%s)", tc.name, err, tc.want, tc.detail)
		}
		if j.read > 256<<10 {
			t.Fatalf("%s: read %d bytes of junk before refusing it", tc.name, j.read)
		}
	}
}

// peakHeap samples the heap while fn runs and returns the highest
// HeapAlloc above the level before.
func peakHeap(fn func()) uint64 {
	// A low GC target makes HeapAlloc follow what is live, not what the
	// collector has yet to reclaim.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	var peak uint64
	done := make(chan struct{})
	var wg stdsync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > peak {
				peak = m.HeapAlloc - base
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return peak
}

// The bundle of 268,288 bad records, validly signed: it imports
// nothing, counts every refusal, keeps only the first few, and the import
// holds a bounded amount of memory however big the file (here ~35 MB;
// before, the whole file and every message were held at once).
func TestImportManyBadRecordsBounded(t *testing.T) {
	const records = 268288
	path := filepath.Join(t.TempDir(), "bad.bundle")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sk := secret(t, "mallory")
	bw, err := bundle.NewWriter(f, sk, bundle.WriterOptions{Created: 1})
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(strings.Repeat("\xd2junk card ", 10))
	batch := make([][]byte, proto.MaxBatch)
	for i := range batch {
		batch[i] = bad
	}
	for from := 1; from <= records; from += proto.MaxBatch {
		n := min(proto.MaxBatch, records-from+1)
		if err := bw.Msg(&proto.Msg{T: proto.TCards, Author: sk.ID().Bytes(), From: uint64(from), Cards: batch[:n]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	size, _ := f.Seek(0, io.SeekEnd)
	f.Close()
	st := NewMemStore(testCaps)
	var stats Stats
	var rej []Rejection
	peak := peakHeap(func() {
		in, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		stats, rej, err = Import(bufio.NewReader(in), st, ImportOptions{SpoolDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
	})
	if stats.Rejected != records || len(rej) != KeptRejections || stats.Received != 0 || len(st.Heads()) != 0 {
		t.Fatalf("stats %+v, %d rejections kept, %d logs stored", stats, len(rej), len(st.Heads()))
	}
	if rej[0].Seq != 1 || rej[KeptRejections-1].Seq != KeptRejections {
		t.Fatalf("kept rejections are not the first ones: %v .. %v", rej[0], rej[KeptRejections-1])
	}
	const bound = 48 << 20
	t.Logf("%d-byte bundle, %d records: peak heap %d MB (bound %d MB)", size, records, peak>>20, bound>>20)
	if peak > bound {
		t.Fatalf("import held %d MB for a %d MB bundle", peak>>20, size>>20)
	}
}
