package log

// KEK storage for crypto-shred (see ARCHITECTURE.md, "Capabilities and
// encryption"). A key-encryption key wraps the CEKs of this home's own
// encrypted cards; deleting it makes those payloads unreadable here for ever.
// Deleting must remove the bytes from the disk, not just hide them, so:
//
//   - a KEK never passes through Pebble's write-ahead log: PutKEK writes it
//     into a one-key sstable and ingests that file (the WAL, whose files
//     Pebble recycles without erasing, only ever sees the shred marker);
//   - Shred overwrites the key with an empty marker, flushes, compacts the
//     KEK key range to the bottom level (which drops the old value), waits
//     for Pebble to delete the obsolete files, and then scans every file of
//     the store directory to prove the KEK is gone, failing loudly if not.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sublog/sublog/log/capsule"
)

// pfxKEK is the KEK key prefix: k id(16) -> KEK(32), or empty once shredded.
const pfxKEK = 'k'

// ErrShredIncomplete: after shredding, a file of the store still holds the
// KEK's bytes. The KEK is marked shredded either way.
var ErrShredIncomplete = errors.New("log: shredded KEK bytes still on disk")

const kekTmpPrefix = "kek-ingest-"

func kekKey(id []byte) []byte { return append([]byte{pfxKEK}, id...) }

// dir is the store's directory, as Pebble knows it.
func (s *Store) dir() string {
	// The path of a (hypothetical) table object lives in the store directory.
	// FileType 2 is Pebble's sstable type (base.FileTypeTable is internal).
	return filepath.Dir(s.db.ObjProvider().Path(objstorage.ObjectMetadata{FileType: 2}))
}

// PutKEK stores a new KEK durably, without writing it to the WAL.
func (s *Store) PutKEK(k *capsule.KEK) error {
	if err := s.usable(); err != nil {
		return err
	}
	kk := kekKey(k.ID[:])
	if _, closer, err := s.db.Get(kk); err == nil {
		closer.Close()
		return fmt.Errorf("log: KEK %x already exists", k.ID)
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	s.removeStaleIngests()
	var nonce [8]byte
	rand.Read(nonce[:])
	path := filepath.Join(s.dir(), kekTmpPrefix+hex.EncodeToString(nonce[:])+".sst")
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("log: KEK file: %w", err)
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: s.db.TableFormat()})
	if err := w.Set(kk, k.Key[:]); err != nil {
		w.Close()
		os.Remove(path)
		return fmt.Errorf("log: KEK file: %w", err)
	}
	if err := w.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("log: KEK file: %w", err)
	}
	err = s.db.Ingest(context.Background(), []string{path})
	// Pebble hard-links (or copies) the file into the store; our name goes.
	os.Remove(path)
	if err != nil {
		return fmt.Errorf("log: storing KEK: %w", err)
	}
	return nil
}

// removeStaleIngests deletes KEK files left by a crash between writing and
// ingesting (they are not part of the database).
func (s *Store) removeStaleIngests() {
	ents, _ := os.ReadDir(s.dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), kekTmpPrefix) {
			os.Remove(filepath.Join(s.dir(), e.Name()))
		}
	}
}

// KEK returns a stored KEK: capsule.ErrShredded when it was shredded here,
// capsule.ErrNoKEK when this store never had it.
func (s *Store) KEK(id []byte) ([]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(kekKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %x", capsule.ErrNoKEK, id)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	switch len(v) {
	case 0:
		return nil, fmt.Errorf("%w: %x", capsule.ErrShredded, id)
	case capsule.KEKSize:
		return bytes.Clone(v), nil
	}
	return nil, fmt.Errorf("%w: KEK record %x has %d bytes", ErrCorrupt, id, len(v))
}

// KEKs lists the IDs of the live (not shredded) KEKs.
func (s *Store) KEKs() ([][]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(prefixBounds(pfxKEK))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for it.First(); it.Valid(); it.Next() {
		if len(it.Value()) > 0 {
			out = append(out, bytes.Clone(it.Key()[1:]))
		}
	}
	return out, it.Close()
}

// Shred deletes a KEK so that no byte of it remains in the store directory,
// and leaves a marker so readers learn the card was shredded (not merely
// never theirs). Cards are untouched and still verify. Shredding an unknown
// KEK is capsule.ErrNoKEK; shredding twice is harmless.
func (s *Store) Shred(id []byte) error {
	old, err := s.KEK(id)
	if errors.Is(err, capsule.ErrShredded) {
		// Already shredded; a first attempt may have ended while a reader
		// still held the old files, so compact again (what is left of the
		// old value is no longer pinned by anything but old files).
		return s.compactKEKs()
	}
	if err != nil {
		return err
	}
	defer clear(old)
	if err := s.db.Set(kekKey(id), nil, pebble.Sync); err != nil {
		return fmt.Errorf("log: shredding KEK: %w", err)
	}
	if err := s.compactKEKs(); err != nil {
		return err
	}
	// A reader that is still iterating (a Verify, a scan) keeps the files it
	// started with until it ends; they are deleted then. Wait a little for
	// that before saying the shred is incomplete.
	deadline := time.Now().Add(shredWait)
	for {
		s.db.TestOnlyWaitForCleaning()
		s.removeStaleIngests()
		files, err := s.FilesContaining(old)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s (a reader still holds them; they are deleted when it ends)", ErrShredIncomplete, strings.Join(files, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shredWait is how long Shred waits for readers to let go of old files.
const shredWait = 5 * time.Second

// compactKEKs flushes the memtable and rewrites every file of the KEK
// range, so overwritten KEK values are dropped.
func (s *Store) compactKEKs() error {
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("log: shredding KEK: flush: %w", err)
	}
	if err := s.db.Compact(context.Background(), []byte{pfxKEK}, []byte{pfxKEK + 1}, false); err != nil {
		return fmt.Errorf("log: shredding KEK: compaction: %w", err)
	}
	return nil
}

// FilesContaining lists the files of the store directory whose bytes
// contain needle (the shred proof; tests use it for CEKs too).
func (s *Store) FilesContaining(needle []byte) ([]string, error) {
	return filesContaining(s.dir(), needle)
}

func filesContaining(dir string, needle []byte) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			out = append(out, filepath.Base(p))
		}
		clear(b)
		return nil
	})
	return out, err
}
