package transport

import (
	"io"
	stdsync "sync"
)

// Stdio makes a Conn of a reader and a writer, typically a process's stdin
// and stdout, so `ssh host sublog sync --stdio` carries a sync over any pipe.
// Close closes both ends where they can be closed.
func Stdio(r io.Reader, w io.Writer) Conn { return &stdio{r: r, w: w} }

type stdio struct {
	r    io.Reader
	w    io.Writer
	once stdsync.Once
}

func (s *stdio) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *stdio) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *stdio) Close() error {
	var err error
	s.once.Do(func() {
		if c, ok := s.w.(io.Closer); ok {
			err = c.Close()
		}
		if c, ok := s.r.(io.Closer); ok {
			if e := c.Close(); err == nil {
				err = e
			}
		}
	})
	return err
}
