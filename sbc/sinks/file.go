package sinks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// fileSender appends one JSON envelope per line and syncs after each batch, so a batch is on
// disk before the cursor moves past it. The file is rotated when a line would take it over
// MaxBytes: Path becomes Path.1, Path.1 becomes Path.2, ..., and Path.Keep is removed.
type fileSender struct {
	spec Spec

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

func newFile(spec Spec) (*fileSender, error) {
	if err := os.MkdirAll(filepath.Dir(spec.Path), 0o750); err != nil {
		return nil, fmt.Errorf("sink %q: %w", spec.Name, err)
	}
	return &fileSender{spec: spec}, nil
}

func (s *fileSender) open() error {
	f, err := os.OpenFile(s.spec.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	s.f, s.size = f, st.Size()
	return nil
}

// rotate shifts the files by one and opens a new, empty Path.
func (s *fileSender) rotate() error {
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f = nil
	p := s.spec.Path
	if s.spec.Keep <= 0 {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return s.open()
	}
	if err := os.Remove(fmt.Sprintf("%s.%d", p, s.spec.Keep)); err != nil && !os.IsNotExist(err) {
		return err
	}
	for i := s.spec.Keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", p, i), fmt.Sprintf("%s.%d", p, i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return err
	}
	return s.open()
}

func (s *fileSender) send(_ context.Context, items []Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.write(items); err != nil {
		if s.f != nil {
			_ = s.f.Close()
			s.f = nil
		}
		return fmt.Errorf("file %s: %w", s.spec.Path, err)
	}
	return nil
}

func (s *fileSender) write(items []Item) error {
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	var line []byte
	for _, it := range items {
		line = append(append(line[:0], it.Body...), '\n')
		if s.size > 0 && s.size+int64(len(line)) > s.spec.MaxBytes {
			if err := s.f.Sync(); err != nil {
				return err
			}
			if err := s.rotate(); err != nil {
				return err
			}
		}
		n, err := s.f.Write(line)
		s.size += int64(n)
		if err != nil {
			return err
		}
	}
	return s.f.Sync()
}

func (s *fileSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}
