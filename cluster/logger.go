package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter makes an *slog.Logger look like the hclog.Logger that raft expects. Arguments are
// formatted the way hclog formats them (hclog.Fmt, Hex, Quote, ...; a value with a String method
// by it; other structs with %+v), so a JSON log shows "Node at ..." rather than a struct's
// exported fields, and a key that repeats one the logger already carries is renamed (raft.node),
// never written twice.
type hclogAdapter struct {
	l     *slog.Logger // base with sub=name once Named
	base  *slog.Logger // without sub
	name  string
	args  []any           // hclog implied args (With), as given
	keys  map[string]bool // keys already on l
	level slog.Level      // floor: Raft's Debug chatter (heartbeats, pipelines) stays at Debug
}

// newHCLog returns the hclog.Logger for component name; bound are key/value pairs that l is to
// carry (node=ID), passed here so that Raft's own keys of the same name do not repeat them.
func newHCLog(l *slog.Logger, name string, bound ...any) hclog.Logger {
	h := &hclogAdapter{name: name, keys: map[string]bool{}}
	attrs := h.attrs(append([]any{"component", name}, bound...))
	for _, a := range attrs {
		h.keys[a.(slog.Attr).Key] = true
	}
	h.keys["sub"] = true
	h.base = l.With(attrs...)
	h.l = h.base
	return h
}

// missingKey names the value of an odd trailing argument, as hclog does.
const missingKey = hclog.MissingKey

// attrs turns hclog's key/value arguments into slog attributes with hclog's formatting.
func (h *hclogAdapter) attrs(args []any) []any {
	out := make([]any, 0, len(args)/2+1)
	if len(args)%2 != 0 {
		last := args[len(args)-1]
		args = args[:len(args)-1]
		if st, ok := last.(hclog.CapturedStacktrace); ok {
			out = append(out, slog.String("stacktrace", string(st)))
		} else {
			args = append(args, missingKey, last)
		}
	}
	for i := 0; i+1 < len(args); i += 2 {
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		if h.keys[key] {
			key = h.name + "." + key
		}
		out = append(out, slog.Any(key, hclogValue(args[i+1])))
	}
	return out
}

// hclogValue formats one argument value as hclog's logger would.
func hclogValue(v any) (out any) {
	switch x := v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, time.Time, time.Duration, slog.LogValuer:
		return v
	case hclog.Format:
		if len(x) == 0 {
			return ""
		}
		if f, ok := x[0].(string); ok {
			return fmt.Sprintf(f, x[1:]...)
		}
		return fmt.Sprint(x...)
	case hclog.Hex:
		return "0x" + strconv.FormatUint(uint64(x), 16)
	case hclog.Octal:
		return "0" + strconv.FormatUint(uint64(x), 8)
	case hclog.Binary:
		return "0b" + strconv.FormatUint(uint64(x), 2)
	case hclog.Quote:
		return strconv.Quote(string(x))
	case hclog.CapturedStacktrace:
		return string(x)
	case error:
		defer func() {
			if recover() != nil {
				out = fmt.Sprintf("%v", v)
			}
		}()
		return x.Error()
	case fmt.Stringer:
		defer func() {
			if recover() != nil { // a nil pointer whose String dereferences it
				out = "<nil>"
			}
		}()
		return x.String()
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Map, reflect.Interface, reflect.Func, reflect.Chan:
		return fmt.Sprintf("%+v", v)
	}
	return v
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func slogLevel(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := slogLevel(level)
	if lv < h.level || !h.l.Enabled(context.Background(), lv) {
		return
	}
	h.l.Log(context.Background(), lv, msg, h.attrs(args)...)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(lv hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(lv))
}
func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	attrs := h.attrs(args)
	c.keys = make(map[string]bool, len(h.keys)+len(attrs))
	for k := range h.keys {
		c.keys[k] = true
	}
	for _, a := range attrs {
		c.keys[a.(slog.Attr).Key] = true
	}
	c.l, c.base = h.l.With(attrs...), h.base.With(attrs...)
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if h.name != "" {
		name = h.name + "." + name
	}
	c.name = name
	c.l = h.base.With("sub", name)
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.l = h.base.With("sub", name)
	return &c
}

func (h *hclogAdapter) SetLevel(level hclog.Level) { h.level = slogLevel(level) }

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}

func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(opts).Writer()
}
