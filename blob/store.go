package blob

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	stdsync "sync"
	"time"
)

// Store is a directory of blobs (a home's blobs/):
//
//	sha256/<hex>            a complete blob, present only once its whole hash matched
//	sha256/<hex>.manifest   its manifest (recomputed when missing or damaged)
//	partial/<hex>.data      a blob being fetched: a sparse file, chunks at their offsets
//	partial/<hex>.manifest  the manifest it is being fetched against
//
// Chunks of a partial are written without a sync: on resume every chunk
// range is hashed again and only those that match the manifest count as
// held, so a torn write costs a refetch, never a wrong byte. A blob is
// completed by hashing the whole file, syncing it and renaming it into
// sha256/, so a crash leaves either the partial or the complete blob.
//
// One process owns a home's store at a time (the home's lock); within it,
// Store is safe for concurrent use and fetches of one blob are serialised.
type Store struct {
	dir string

	mu    stdsync.Mutex
	locks map[Hash]*stdsync.Mutex
}

// Open opens (creating it) the blob store in dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "partial")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
	}
	return &Store{dir: dir, locks: map[Hash]*stdsync.Mutex{}}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(h Hash) string     { return filepath.Join(s.dir, "sha256", h.Hex()) }
func (s *Store) manPath(h Hash) string  { return s.path(h) + ".manifest" }
func (s *Store) partData(h Hash) string { return filepath.Join(s.dir, "partial", h.Hex()+".data") }
func (s *Store) partMan(h Hash) string  { return filepath.Join(s.dir, "partial", h.Hex()+".manifest") }

// lock serialises work on one blob.
func (s *Store) lock(h Hash) func() {
	s.mu.Lock()
	l := s.locks[h]
	if l == nil {
		l = &stdsync.Mutex{}
		s.locks[h] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Has tells whether the complete blob is here.
func (s *Store) Has(h Hash) bool {
	_, err := os.Stat(s.path(h))
	return err == nil
}

// Put stores data and returns its hash (storing the same bytes again is a
// no-op).
func (s *Store) Put(data []byte) (Hash, error) {
	if len(data) > MaxSize {
		return Hash{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	h := Sum(data)
	unlock := s.lock(h)
	defer unlock()
	if s.Has(h) {
		return h, nil
	}
	if err := writeAtomic(s.path(h), data); err != nil {
		return Hash{}, fmt.Errorf("blob: %w", err)
	}
	if err := writeAtomic(s.manPath(h), ManifestOf(data).Encode()); err != nil {
		return Hash{}, fmt.Errorf("blob: %w", err)
	}
	return h, nil
}

// Get returns a complete blob's bytes after checking them against h: a
// stored blob that no longer matches is ErrCorrupt (and is left for GC or a
// refetch: Remove it).
func (s *Store) Get(h Hash) ([]byte, error) {
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, h)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	if Sum(b) != h {
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, h)
	}
	return b, nil
}

// Manifest is a complete blob's manifest, from its file or computed again
// (and rewritten) when that is missing or does not fit the blob's size.
func (s *Store) Manifest(h Hash) (Manifest, error) {
	fi, err := os.Stat(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, h)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("blob: %w", err)
	}
	if b, err := os.ReadFile(s.manPath(h)); err == nil {
		if m, err := DecodeManifest(b); err == nil && m.Size == uint64(fi.Size()) {
			return m, nil
		}
	}
	data, err := s.Get(h)
	if err != nil {
		return Manifest{}, err
	}
	m := ManifestOf(data)
	_ = writeAtomic(s.manPath(h), m.Encode()) // a cache: failing to write it costs a recompute
	return m, nil
}

// reader opens a complete blob for chunk reads.
func (s *Store) reader(h Hash) (*os.File, error) {
	f, err := os.Open(s.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, h)
	}
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	return f, nil
}

// Remove deletes a blob and any partial of it.
func (s *Store) Remove(h Hash) error {
	unlock := s.lock(h)
	defer unlock()
	var errs []error
	for _, p := range []string{s.path(h), s.manPath(h), s.partData(h), s.partMan(h)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Info describes one stored blob (or partial).
type Info struct {
	Hash     Hash      `json:"hash"`
	Size     int64     `json:"size"`
	Partial  bool      `json:"partial,omitempty"`
	Modified time.Time `json:"modified"`
}

// List names every complete blob and partial, sorted by hash.
func (s *Store) List() ([]Info, error) {
	var out []Info
	for _, sub := range []string{"sha256", "partial"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			if sub == "partial" {
				var ok bool
				if name, ok = strings.CutSuffix(name, ".data"); !ok {
					continue
				}
			}
			h, err := ParseHash("sha256:" + name)
			if err != nil {
				continue // a manifest, a temporary file or a stranger
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			out = append(out, Info{Hash: h, Size: fi.Size(), Partial: sub == "partial", Modified: fi.ModTime()})
		}
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := strings.Compare(a.Hash.Hex(), b.Hash.Hex()); c != 0 {
			return c
		}
		if a.Partial == b.Partial {
			return 0
		}
		if a.Partial {
			return 1
		}
		return -1
	})
	return out, nil
}

// GC removes every complete blob and partial that referenced does not keep
// and that is older than grace at now (a blob just stored, whose card is not
// written yet, is kept). It returns what it removed.
func (s *Store) GC(referenced func(Hash) bool, now time.Time, grace time.Duration) ([]Info, error) {
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	var gone []Info
	var errs []error
	for _, in := range list {
		if referenced(in.Hash) || now.Sub(in.Modified) < grace {
			continue
		}
		unlock := s.lock(in.Hash)
		var paths []string
		if in.Partial {
			paths = []string{s.partData(in.Hash), s.partMan(in.Hash)}
		} else {
			paths = []string{s.path(in.Hash), s.manPath(in.Hash)}
		}
		for _, p := range paths {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		unlock()
		gone = append(gone, in)
	}
	return gone, errors.Join(errs...)
}

// Partial is a blob being fetched against a manifest. It is not safe for
// concurrent use; the store holds the blob's lock until Close.
type Partial struct {
	s       *Store
	h       Hash
	m       Manifest
	f       *os.File
	have    []bool
	held    int
	damaged int
	unlock  func()
	// whole hashes the held prefix chunks 0..next-1 as they come, so a
	// fetch in order needs no second read of the file to check the whole.
	whole hash.Hash
	next  int
	// unsynced counts the bytes written since the flusher was last woken;
	// flush wakes it (nil until the first wake), flushed is closed when it
	// has stopped.
	unsynced int64
	flush    chan struct{}
	flushed  chan struct{}
}

// syncEvery is how many written bytes of a partial wake its flusher, a
// goroutine that syncs the file while the rest of the blob arrives. A sync
// costs in proportion to the bytes it makes durable (≈ 500 MiB/s on these
// machines' disks, as much time as the rest of a fetch), so syncing as the
// chunks come leaves Finish's own sync only the tail to wait for. What the
// flusher syncs early only makes a resume keep more; Finish still syncs
// before the blob is complete.
const syncEvery = 4 << 20

// wakeFlusher asks the flusher (started on first use) to sync the file; a
// wake while it is syncing is coalesced into one more sync.
func (p *Partial) wakeFlusher() {
	if p.flush == nil {
		p.flush, p.flushed = make(chan struct{}, 1), make(chan struct{})
		go func(f *os.File, wake <-chan struct{}, done chan<- struct{}) {
			defer close(done)
			for range wake {
				f.Sync() // (an error shows again at Finish's own sync)
			}
		}(p.f, p.flush, p.flushed)
	}
	select {
	case p.flush <- struct{}{}:
	default:
	}
}

// stopFlusher stops the flusher and waits until it is no longer syncing.
func (p *Partial) stopFlusher() {
	if p.flush != nil {
		close(p.flush)
		<-p.flushed
		p.flush, p.flushed = nil, nil
	}
}

// Begin starts (or resumes) fetching h against m. A partial left by an
// earlier fetch against the same manifest is resumed: each of its chunk
// ranges is hashed again and those that match count as held. A partial
// against another manifest is dropped (one of the two manifests lied, and
// only the whole hash will tell which). The caller must Close the Partial.
func (s *Store) Begin(h Hash, m Manifest) (*Partial, error) {
	if m.Size > MaxSize || len(m.Chunks) != chunkCount(m.Size) {
		return nil, fmt.Errorf("%w: %d chunks for %d bytes", ErrBadManifest, len(m.Chunks), m.Size)
	}
	unlock := s.lock(h)
	p := &Partial{s: s, h: h, m: m, have: make([]bool, len(m.Chunks)), unlock: unlock, whole: sha256.New()}
	enc := m.Encode()
	old, err := os.ReadFile(s.partMan(h))
	if err != nil || string(old) != string(enc) {
		os.Remove(s.partData(h))
		if err := writeAtomic(s.partMan(h), enc); err != nil {
			unlock()
			return nil, fmt.Errorf("blob: %w", err)
		}
	}
	f, err := os.OpenFile(s.partData(h), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("blob: %w", err)
	}
	p.f = f
	fi, err := f.Stat()
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("blob: %w", err)
	}
	if fi.Size() > int64(m.Size) {
		if err := f.Truncate(int64(m.Size)); err != nil {
			p.Close()
			return nil, fmt.Errorf("blob: %w", err)
		}
	}
	buf := make([]byte, ChunkSize)
	for i := range m.Chunks {
		lo, hi := m.span(i)
		if hi > fi.Size() || (lo == hi && i > 0) {
			break
		}
		b := buf[:hi-lo]
		if _, err := f.ReadAt(b, lo); err != nil && !errors.Is(err, io.EOF) {
			break
		}
		if sha256.Sum256(b) == m.Chunks[i] {
			p.have[i] = true
			p.held++
			if p.next == i {
				p.whole.Write(b)
				p.next++
			}
		} else {
			p.damaged++
		}
	}
	return p, nil
}

// Manifest is what the partial is fetched against.
func (p *Partial) Manifest() Manifest { return p.m }

// Have tells whether chunk i is held (verified).
func (p *Partial) Have(i int) bool { return i >= 0 && i < len(p.have) && p.have[i] }

// Missing lists the chunks not held yet, in order.
func (p *Partial) Missing() []int {
	var out []int
	for i, ok := range p.have {
		if !ok {
			out = append(out, i)
		}
	}
	return out
}

// Held is how many chunks are held.
func (p *Partial) Held() int { return p.held }

// Damaged is how many chunk ranges on disk did not match the manifest when
// the partial was opened (a torn write or a damaged disk: fetched again).
func (p *Partial) Damaged() int { return p.damaged }

// Put checks chunk i against the manifest and keeps it; a chunk that does
// not match is ErrBadChunk and nothing is written.
func (p *Partial) Put(i int, data []byte) error {
	if err := p.check(i, data); err != nil {
		return err
	}
	return p.keep(i, data)
}

// check tells whether data is chunk i of the manifest (ErrBadChunk when it
// is not). It reads only the manifest, so it may run on another goroutine
// than keep, at the same time (Fetch's pipeline).
func (p *Partial) check(i int, data []byte) error {
	if i < 0 || i >= len(p.m.Chunks) {
		return fmt.Errorf("%w: chunk %d of %d", ErrProtocol, i, len(p.m.Chunks))
	}
	if len(data) != p.m.ChunkLen(i) || sha256.Sum256(data) != p.m.Chunks[i] {
		return fmt.Errorf("%w: chunk %d of %s", ErrBadChunk, i, p.h)
	}
	return nil
}

// keep writes chunk i, which check passed, and counts it held. Calls of
// keep (and of Put, Held, Missing, Complete, Finish) are not concurrent.
func (p *Partial) keep(i int, data []byte) error {
	if i < 0 || i >= len(p.m.Chunks) || len(data) != p.m.ChunkLen(i) {
		return fmt.Errorf("%w: chunk %d of %d", ErrProtocol, i, len(p.m.Chunks))
	}
	if p.have[i] {
		return nil
	}
	lo, _ := p.m.span(i)
	if _, err := p.f.WriteAt(data, lo); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if p.unsynced += int64(len(data)); p.unsynced >= syncEvery {
		p.wakeFlusher()
		p.unsynced = 0
	}
	p.have[i] = true
	p.held++
	if p.next == i {
		p.whole.Write(data)
		p.next++
		p.advance()
	}
	return nil
}

// advance feeds the whole hash with held chunks that follow the prefix
// (chunks that arrived out of order), reading them back from the file.
func (p *Partial) advance() {
	var buf []byte
	for p.next < len(p.have) && p.have[p.next] {
		lo, hi := p.m.span(p.next)
		if buf == nil {
			buf = make([]byte, ChunkSize)
		}
		b := buf[:hi-lo]
		if _, err := p.f.ReadAt(b, lo); err != nil && !(errors.Is(err, io.EOF) && lo == hi) {
			return // Finish hashes the file again
		}
		p.whole.Write(b)
		p.next++
	}
}

// Complete tells whether every chunk is held.
func (p *Partial) Complete() bool { return p.held == len(p.have) }

// Finish checks the whole file against the blob's hash and, if it matches,
// makes it a complete blob. If it does not match, the manifest lied: the
// partial is dropped and ErrMismatch returned.
func (p *Partial) Finish() error {
	if !p.Complete() {
		return fmt.Errorf("%w: %d of %d chunks held", ErrProtocol, p.held, len(p.have))
	}
	p.stopFlusher()
	if err := p.f.Truncate(int64(p.m.Size)); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	hw := p.whole
	if p.next != len(p.have) {
		hw = sha256.New()
		if _, err := io.Copy(hw, io.NewSectionReader(p.f, 0, int64(p.m.Size))); err != nil {
			return fmt.Errorf("blob: %w", err)
		}
	}
	if Hash(hw.Sum(nil)) != p.h {
		p.drop()
		return fmt.Errorf("%w: %s (the manifest it was fetched against was false)", ErrMismatch, p.h)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if err := writeAtomic(p.s.manPath(p.h), p.m.Encode()); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	if err := os.Rename(p.s.partData(p.h), p.s.path(p.h)); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	os.Remove(p.s.partMan(p.h))
	if err := syncDir(filepath.Dir(p.s.path(p.h))); err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	return nil
}

func (p *Partial) drop() {
	os.Remove(p.s.partData(p.h))
	os.Remove(p.s.partMan(p.h))
	for i := range p.have {
		p.have[i] = false
	}
	p.held, p.next = 0, 0
	p.whole.Reset()
}

// Close releases the partial (what is held stays on disk for a resume).
func (p *Partial) Close() error {
	p.stopFlusher()
	var err error
	if p.f != nil {
		err = p.f.Close()
		p.f = nil
	}
	if p.unlock != nil {
		p.unlock()
		p.unlock = nil
	}
	return err
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
