package config

import (
	"errors"
	"fmt"
)

// ErrInvalid wraps every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// FieldError is a configuration error located at a field (dotted path) and, when the value came
// from a file, at its line.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
	col   int // column of the value, when known (to name the field)
}

func (e *FieldError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
}

func (e *FieldError) Unwrap() error { return ErrInvalid }
